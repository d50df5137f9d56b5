"""The floor under any pure-Python reader of a pcap: what it costs before a packet is understood.

Run by hand beside `bench.py` (same machine, same file):

    python3 benchmarks/floor.py /tmp/wsdiag-bench-200MB-s1.pcap

It times, in fresh interpreters, (1) starting Python and doing nothing, (2) hopping from record
header to record header over the whole file (one `struct` read per record, nothing else) and
(3) the same plus a dictionary lookup of each packet's 12 address/port bytes, the least a reader
must do to know which connection a packet belongs to. wsdiag does all of that and then
everything else; the issue's goals (25x faster than tshark, within 3x of `tcpdump -r`) are
budgets this floor can be compared with directly.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

_HOP = """
import mmap, struct, sys
f = open(sys.argv[1], "rb"); m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
u = struct.Struct("<I").unpack_from
n, off = len(m), 24
while off < n:
    off += 16 + u(m, off + 8)[0]
"""
_LOOKUP = """
import mmap, struct, sys
f = open(sys.argv[1], "rb"); m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
u = struct.Struct("<I").unpack_from
flows = {}; get = flows.get; n, off = len(m), 24
while off < n:
    caplen = u(m, off + 8)[0]
    key = m[off + 42 : off + 54]  # Ethernet + IPv4: addresses and ports
    if get(key) is None:
        flows[key] = 0
    off += 16 + caplen
"""


def _time(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: floor.py FILE.pcap (classic little-endian pcap, Ethernet)")
    path, runs = sys.argv[1], 5
    with open(path, "rb") as f:
        if f.read(4) not in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            sys.exit("floor.py reads classic little-endian pcap files only")
    py = sys.executable
    start = _time([py, "-c", "pass"], runs)
    hop = _time([py, "-c", _HOP, path], runs)
    lookup = _time([py, "-c", _LOOKUP, path], runs)
    print(f"python start, nothing else:          {start:.3f} s")
    print(f"start + hop over every record:        {hop:.3f} s")
    print(f"start + hop + flow lookup per packet: {lookup:.3f} s  (median of {runs})")


if __name__ == "__main__":
    main()
