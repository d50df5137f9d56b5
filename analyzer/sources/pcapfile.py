"""Streaming pcap / pcapng reader in pure Python.

Why our own reader instead of scapy's or dpkt's: those end iteration silently on damaged files,
accept bad versions and allocate whatever length a file claims (reliability.md §0.1, §1.6,
§1.7). Here every length is checked against libpcap's limits *before* anything is read, the
byte offset is tracked, and damage after some records is reported as an `Anomaly`
(`capture-truncated` / `capture-damaged`) instead of a silent stop, so "no silent truncation"
can be tested.

Speed: the file is read in 1 MiB chunks into one `bytes` buffer and record headers are
`struct.unpack_from`-ed out of it; the only per-record allocations are the data slice and the
`Record`. Reading never seeks, so pipes and stdin work, gzip included.

Behaviour follows libpcap where the tools disagree (version checks, swapped caplen/len in
pcap 2.0-2.3 files, reserved link-type bits), and Wireshark where libpcap refuses what users
need (pcapng sections of different byte order, interfaces of different link types, EPB caplen
above the interface snaplen). Frame numbers follow Wireshark's `frame.number`: pcapng custom
blocks (and systemd-journal / sysdig event blocks) are records in Wireshark, so they consume a
frame number although they are not yielded.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, cast

from analyzer.errors import CaptureError
from analyzer.limits import DEFAULT_LIMITS, Limits
from analyzer.model import Anomaly, InputSummary
from analyzer.sources.decode import AnomalyLog

CHUNK = 1 << 20
"""Bytes asked from the stream per read: big reads keep the per-record cost in `unpack_from`."""

SHB_MAX_BYTES = 1 << 20
"""libpcap's BT_SHB_INSANE_MAX: a Section Header Block bigger than this is damage."""

NS_PER_S = 1_000_000_000

_PCAP_MAGICS: dict[bytes, tuple[str, int, int, str]] = {
    # first 4 bytes: (struct byte order, ns per timestamp tick, record header size, format)
    b"\xd4\xc3\xb2\xa1": ("<", 1000, 16, "pcap"),
    b"\xa1\xb2\xc3\xd4": (">", 1000, 16, "pcap"),
    b"\x4d\x3c\xb2\xa1": ("<", 1, 16, "pcap-ns"),
    b"\xa1\xb2\x3c\x4d": (">", 1, 16, "pcap-ns"),
    # Alexey Kuznetsov's patched libpcap: 8 more bytes (ifindex, protocol, pkt_type, pad) per record
    b"\x34\xcd\xb2\xa1": ("<", 1000, 24, "pcap-kuznetzov"),
    b"\xa1\xb2\xcd\x34": (">", 1000, 24, "pcap-kuznetzov"),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_BOM_LE = b"\x4d\x3c\x2b\x1a"
_BOM_BE = b"\x1a\x2b\x3c\x4d"

_COMPRESSED: list[tuple[bytes, str, str]] = [
    (b"BZh", "bzip2", "bunzip2"),
    (b"\xfd7zXZ\x00", "xz", "unxz"),
    (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
    (b"\x04\x22\x4d\x18", "lz4", "unlz4"),
    (b"PK\x03\x04", "zip", "unzip"),
]

# pcapng block types
_BT_SHB = 0x0A0D0D0A
_BT_IDB = 0x00000001
_BT_PB = 0x00000002  # obsolete Packet Block
_BT_SPB = 0x00000003
_BT_EPB = 0x00000006
# Blocks Wireshark turns into records of their own (custom, systemd journal, sysdig events):
# they take a frame number there, so they take one here too, to keep frame numbers equal.
_FRAME_ONLY_BLOCKS = frozenset(
    {
        0x00000BAD,
        0x40000BAD,
        0x00000009,
        0x00000204,
        0x00000208,
        0x00000216,
        0x00000217,
        0x00000221,
        0x00000222,
    }
)

_LT_RESERVED1 = 0x03FF0000  # pcap link-type bits that must be zero (wiretap, newer libpcap)


@dataclass(frozen=True, slots=True)
class Record:
    """One captured packet as the file holds it, before any protocol decoding."""

    frame: int  # 1-based over all records of the file (= Wireshark frame.number), across sections
    ts_ns: int  # integer nanoseconds since the epoch
    linktype: int  # LINKTYPE_* of the interface the packet was captured on
    data: bytes  # captured bytes (caplen of them)
    wirelen: int  # length of the packet on the wire


# Building a frozen dataclass goes through object.__setattr__ once per field (~0.7 us per
# record, as much as the rest of the loop); setting the slots directly gives the same object
# in ~0.4 us.
_new = object.__new__
_set_frame, _set_ts, _set_lt, _set_data, _set_wirelen = (
    Record.__dict__[name].__set__ for name in ("frame", "ts_ns", "linktype", "data", "wirelen")
)


def _record(frame: int, ts_ns: int, linktype: int, data: bytes, wirelen: int) -> Record:
    rec: Record = _new(Record)
    _set_frame(rec, frame)
    _set_ts(rec, ts_ns)
    _set_lt(rec, linktype)
    _set_data(rec, data)
    _set_wirelen(rec, wirelen)
    return rec


# --------------------------------------------------------------------------------------------
# Opening


class _Prepend(io.RawIOBase):
    """A non-seekable stream with the bytes already sniffed from it put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._head = head
        self._rest = rest
        self._read: Callable[[int], bytes] = getattr(rest, "read1", rest.read)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(b), len(self._head))
            b[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._read(len(b))
        n = len(data)
        b[:n] = data
        return n


class _GzipInput(gzip.GzipFile):
    """GzipFile that also closes the file it was opened over (GzipFile leaves it open)."""

    def __init__(self, raw: BinaryIO, owns: bool) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw_input = raw
        self._owns = owns

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self._owns:
                self._raw_input.close()


def _read_exactly(stream: BinaryIO, n: int) -> bytes:
    """Read up to n bytes, looping over short reads (pipes); fewer only at end of stream."""
    parts: list[bytes] = []
    have = 0
    while have < n:
        chunk = stream.read(n - have)
        if not chunk:
            break
        parts.append(chunk)
        have += len(chunk)
    return b"".join(parts)


def open_input(path: str) -> BinaryIO:
    """Open a capture for `read_records`: a path or "-" (stdin), gzip undone on the fly.

    Compression is recognised by its magic, not the file name, and gzip is decompressed as a
    stream (never seeking), so `gzip -c x.pcap | wsdiag -r -` works. Other compressors are
    refused with the real cause (bzip2/xz/zstd/lz4/zip) rather than "not a capture file".
    Every failure is a one-line `CaptureError`.
    """
    owns = path != "-"
    name = "<stdin>" if path == "-" else path
    raw: BinaryIO
    if path == "-":
        raw = sys.stdin.buffer
    else:
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise CaptureError(f"{name}: no such file") from None
        except PermissionError:
            raise CaptureError(f"{name}: permission denied") from None
        except OSError as e:
            raise CaptureError(f"{name}: cannot open: {e.strerror or e}") from None
        if stat.S_ISDIR(st.st_mode):
            raise CaptureError(f"{name}: is a directory, not a capture file")
        try:
            raw = open(path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        except PermissionError:
            raise CaptureError(f"{name}: permission denied") from None
        except OSError as e:
            raise CaptureError(f"{name}: cannot open: {e.strerror or e}") from None
        if stat.S_ISREG(st.st_mode) and st.st_size == 0:
            raw.close()
            raise CaptureError(f"{name}: empty file")
    try:
        seekable = raw.seekable()
        head = _read_exactly(raw, 8)
        if seekable:
            raw.seek(0)
    except OSError as e:
        if owns:
            raw.close()
        raise CaptureError(f"{name}: read error: {e.strerror or e}") from None
    if not head:
        if owns:
            raw.close()
        raise CaptureError(f"{name}: empty file" if owns else f"{name}: empty input")
    for magic, what, tool in _COMPRESSED:
        if head.startswith(magic):
            if owns:
                raw.close()
            raise CaptureError(f"{name}: {what}-compressed; decompress it first ({tool})")
    stream: BinaryIO = raw if seekable else io.BufferedReader(_Prepend(head, raw), CHUNK)
    if head.startswith(b"\x1f\x8b"):
        return cast(BinaryIO, _GzipInput(stream, owns))
    return stream


# --------------------------------------------------------------------------------------------
# Reading


class _Stop(Exception):
    """Internal: reading must stop; `name`/`why` become the damage anomaly."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(why)
        self.name = name
        self.why = why


class _Input:
    """The read side: a chunked reader that turns stream errors into `_Stop`."""

    def __init__(self, stream: BinaryIO) -> None:
        self.read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
        self.progress: Progress | None = None
        self.offset = 0  # stream offset of the end of what was read so far

    def fill(self, buf: bytes, pos: int, need: int) -> bytes:
        """Return buf[pos:] extended with reads until it holds `need` bytes or the input ends."""
        parts = [buf[pos:]]
        have = len(parts[0])
        read = self.read
        try:
            while have < need:
                chunk = read(max(CHUNK, need - have))
                if not chunk:
                    break
                parts.append(chunk)
                have += len(chunk)
                self.offset += len(chunk)
        except EOFError as e:  # gzip stream cut short
            raise _Stop("capture-truncated", f"compressed stream ends early ({e})") from None
        except (OSError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            raise _Stop("capture-damaged", f"read error: {e}") from None
        if self.progress is not None:
            self.progress(self.offset)
        return b"".join(parts)


Skip = Callable[[bytes, int, int, int], bool]
"""`skip(buf, start, caplen, ts_ns)`: a consumer's look at an Ethernet record's bytes in the read
buffer (`buf[start:start + caplen]`) before a `Record` is built; True = consumed, do not yield it.
The fast path (`analyzer.fastpath`) uses it so bulk packets never become objects."""

Progress = Callable[[int], None]
"""Called with the stream offset reached each time the read buffer is refilled (~every MiB)."""


def read_records(
    stream: BinaryIO,
    summary: InputSummary,
    limits: Limits = DEFAULT_LIMITS,
    skip: Skip | None = None,
    progress: Progress | None = None,
) -> Iterator[Record]:
    """Yield every packet record of a pcap or pcapng stream, in file order.

    Sets `summary.format`, and keeps `summary.packets` / `summary.bytes_read` current (they
    are written at every buffer refill and when the generator finishes or is closed).
    Raises `CaptureError` only when nothing can be read: not a capture (first 4 bytes named in
    hex), a cut or unsupported file header / first section header. Damage after that ends
    reading with one `capture-truncated` or `capture-damaged` anomaly (record count and byte
    offset in its detail) and `summary.readable_to_end = False`. Oddities that can be read
    past are rate-limited anomalies (see `AnomalyLog`).

    `skip` sees every Ethernet record first and may consume it (see `Skip`); it is never shown
    a record that is damaged, and the frame numbering, anomalies and counts are the same with
    or without it. `progress` is told the byte offset reached at every buffer refill.
    """
    name = summary.path
    inp = _Input(stream)
    try:
        buf = inp.fill(b"", 0, 24)
    except _Stop as e:
        raise CaptureError(f"{name}: {e.why}") from None
    if not buf:
        raise CaptureError(f"{name}: empty file")
    suffix = "+gzip" if isinstance(stream, gzip.GzipFile) else ""
    magic = buf[:4]
    if progress is not None:
        inp.progress = progress
    if magic in _PCAP_MAGICS:
        yield from _read_pcap(inp, buf, summary, limits, suffix, skip)
    elif magic == _PCAPNG_SHB:
        yield from _read_pcapng(inp, buf, summary, limits, suffix, skip)
    else:
        raise CaptureError(f"{name}: not a pcap or pcapng capture file (it starts with {magic.hex(' ')})")


def _damage(summary: InputSummary, name: str, why: str, records: int, offset: int) -> None:
    hint = (
        " (a capture still being written, or cut by a crash or a full disk, ends like this)"
        if name == "capture-truncated"
        else ""
    )
    summary.anomalies.append(
        Anomaly(name, f"reading stopped after {records} records, at byte offset {offset}: {why}{hint}")
    )
    summary.readable_to_end = False


def _read_pcap(
    inp: _Input, buf: bytes, summary: InputSummary, limits: Limits, suffix: str, skip: Skip | None = None
) -> Iterator[Record]:
    """Classic pcap: a 24-byte file header, then (header, data) records to the end."""
    name = summary.path
    order, tick_ns, hdr_len, fmt = _PCAP_MAGICS[buf[:4]]
    if len(buf) < 24:
        raise CaptureError(f"{name}: cut short: the pcap file header is {len(buf)} of 24 bytes")
    major, minor, _zone, _sigfigs, snaplen, ltfield = struct.unpack_from(order + "HHiIII", buf, 4)
    if not ((major == 2 and minor <= 4) or (major == 543 and minor == 0)):
        raise CaptureError(f"{name}: unsupported pcap version {major}.{minor}")
    if ltfield & _LT_RESERVED1:
        raise CaptureError(
            f"{name}: link-type field 0x{ltfield:08x} has reserved bits set; not a valid pcap file"
        )
    linktype = ltfield & 0xFFFF
    if linktype != 1:
        skip = None  # `skip` is only shown Ethernet frames
    # lengths in files before 2.3 (and DG/UX 543.0) are written as (len, caplen)
    swapped = 2 if (major == 543 or minor < 3) else (1 if minor == 3 else 0)
    summary.format = fmt + suffix
    log = AnomalyLog(summary.anomalies, limits)
    if snaplen == 0 or snaplen >= 1 << 31:
        log(Anomaly("bad-snaplen", f"pcap file header snaplen {snaplen}; ignored"))
        snaplen = 0
    max_rec = limits.max_record_bytes
    frac_limit = NS_PER_S // tick_ns  # 10**6 for us, 10**9 for ns
    rec_hdr = struct.Struct(order + "IIII")
    unpack_hdr = rec_hdr.unpack_from
    need_hdr = hdr_len
    snap_limit = snaplen or max_rec
    new, set_frame, set_ts, set_lt = _new, _set_frame, _set_ts, _set_lt
    set_data, set_wirelen = _set_data, _set_wirelen

    pos = 24
    base = 0  # stream offset of buf[0]
    end = len(buf)
    frame = 0
    last_ts = 0
    try:
        while True:
            if end - pos < need_hdr:
                base += pos
                buf = inp.fill(buf, pos, need_hdr)
                pos, end = 0, len(buf)
                summary.packets, summary.bytes_read = frame, base
                if end == 0:
                    return
                if end < need_hdr:
                    raise _Stop(
                        "capture-truncated",
                        f"the file ends inside a record header ({end} of {need_hdr} bytes)",
                    )
            ts_sec, ts_frac, caplen, wirelen = unpack_hdr(buf, pos)
            if swapped and (swapped == 2 or caplen > wirelen):
                caplen, wirelen = wirelen, caplen
            if caplen > max_rec:
                raise _Stop(
                    "capture-damaged",
                    f"record {frame + 1} claims {caplen} captured bytes, more than the "
                    f"{max_rec}-byte maximum",
                )
            stop = pos + need_hdr + caplen
            if stop > end:
                base += pos
                buf = inp.fill(buf, pos, need_hdr + caplen)
                pos, end = 0, len(buf)
                summary.packets, summary.bytes_read = frame, base
                stop = need_hdr + caplen
                if stop > end:
                    raise _Stop(
                        "capture-truncated",
                        f"record {frame + 1} needs {caplen} captured bytes, only {end - need_hdr} are left",
                    )
            frame += 1
            ts_ns = ts_sec * NS_PER_S + ts_frac * tick_ns
            if ts_frac >= frac_limit or ts_ns < last_ts or caplen > wirelen or caplen > snap_limit:
                _record_oddities(log, frame, ts_frac, frac_limit, ts_ns, last_ts, caplen, wirelen, snaplen)
            last_ts = ts_ns
            if skip is not None and skip(buf, stop - caplen, caplen, ts_ns):
                pos = stop
                continue
            # _record() inlined: this loop is the reader's hot path
            rec = new(Record)
            set_frame(rec, frame)
            set_ts(rec, ts_ns)
            set_lt(rec, linktype)
            set_data(rec, buf[stop - caplen : stop])
            set_wirelen(rec, wirelen)
            yield rec
            pos = stop
    except _Stop as e:
        _damage(summary, e.name, e.why, frame, base + pos)
    finally:
        summary.packets, summary.bytes_read = frame, base + pos


def _record_oddities(
    log: AnomalyLog,
    frame: int,
    ts_frac: int,
    frac_limit: int,
    ts_ns: int,
    last_ts: int,
    caplen: int,
    wirelen: int,
    snaplen: int,
) -> None:
    """The recoverable per-record anomalies, off the hot path (called only when one applies)."""
    if ts_frac >= frac_limit:
        log(Anomaly("bad-timestamp", f"fraction of a second {ts_frac} >= {frac_limit}", frame))
    if ts_ns < last_ts:
        log(Anomaly("time-went-backwards", f"{(last_ts - ts_ns) / 1e9:.6f} s back", frame))
    if caplen > wirelen:
        log(Anomaly("caplen-exceeds-wirelen", f"captured {caplen} > on-wire {wirelen}", frame))
    if snaplen and caplen > snaplen:
        log(Anomaly("caplen-exceeds-snaplen", f"captured {caplen} > snaplen {snaplen}", frame))


# --------------------------------------------------------------------------------------------
# pcapng


@dataclass(slots=True)
class _Iface:
    """What an Interface Description Block says about the packets captured on it."""

    linktype: int
    snaplen: int
    mul: int  # ts_ns = ticks * mul // div >> shift + offset_ns
    div: int
    shift: int
    offset_ns: int

    def ts_ns(self, ticks: int) -> int:
        """A packet's timestamp (`if_tsresol` units since `if_tsoffset`) in Unix nanoseconds."""
        return (ticks * self.mul // self.div >> self.shift) + self.offset_ns


class _Section:
    """Byte-order dependent structs of the current section."""

    def __init__(self, order: str) -> None:
        self.order = order
        self.u16 = struct.Struct(order + "H").unpack_from
        self.u32 = struct.Struct(order + "I").unpack_from
        self.hdr = struct.Struct(order + "II").unpack_from
        self.epb = struct.Struct(order + "IIIII").unpack_from
        self.epb_whole = struct.Struct(order + "IIIIIII").unpack_from  # with the block header
        self.pb = struct.Struct(order + "HHIIII").unpack_from
        self.opt = struct.Struct(order + "HH").unpack_from
        self.idb = struct.Struct(order + "HHI").unpack_from
        self.shb = struct.Struct(order + "HH").unpack_from


_SECTIONS = {"<": _Section("<"), ">": _Section(">")}


def _options(sec: _Section, block: bytes, start: int, stop: int) -> Iterator[tuple[int, bytes]]:
    """Walk a block's options; an option running past the block is damage (libpcap, wiretap)."""
    pos = start
    while stop - pos >= 4:
        code, length = sec.opt(block, pos)
        pos += 4
        if code == 0:
            return
        if length > stop - pos:
            raise _Stop(
                "capture-damaged",
                f"option {code} claims {length} bytes, only {stop - pos} left in its block",
            )
        yield code, block[pos : pos + length]
        pos += (length + 3) & ~3


def _ts_conversion(sec: _Section, block: bytes, log: AnomalyLog, frame: int) -> tuple[int, int, int, int]:
    """(mul, div, shift, offset_ns) from an IDB's if_tsresol / if_tsoffset options."""
    mul, div, shift, offset_ns = 1000, 1, 0, 0
    seen_resol = seen_offset = False
    for code, value in _options(sec, block, 16, len(block) - 4):
        if code == 9 and len(value) >= 1 and not seen_resol:
            seen_resol = True
            v = value[0]
            n = v & 0x7F
            if v & 0x80:  # 2^-n seconds per tick
                if n > 63:
                    log(Anomaly("bad-tsresol", f"if_tsresol 2^-{n}; microseconds assumed", frame))
                else:
                    mul, div, shift = NS_PER_S, 1, n
            elif n > 19:  # libpcap: 10^-n must fit in 64 bits
                log(Anomaly("bad-tsresol", f"if_tsresol 10^-{n}; microseconds assumed", frame))
            elif n <= 9:
                mul, div, shift = 10 ** (9 - n), 1, 0
            else:
                mul, div, shift = 1, 10 ** (n - 9), 0
        elif code == 14 and len(value) == 8 and not seen_offset:
            seen_offset = True
            (secs,) = struct.unpack(sec.order + "q", value)
            offset_ns = secs * NS_PER_S
    return mul, div, shift, offset_ns


def _check_shb(sec: _Section, block: bytes) -> None:
    """Version check (libpcap accepts 1.0 and 1.2) and option walk of a Section Header Block."""
    major, minor = sec.shb(block, 12)
    if not (major == 1 and minor in (0, 2)):
        raise _Stop("capture-damaged", f"unsupported pcapng section version {major}.{minor}")
    for _ in _options(sec, block, 24, len(block) - 4):
        pass


def _read_pcapng(
    inp: _Input, buf: bytes, summary: InputSummary, limits: Limits, suffix: str, skip: Skip | None = None
) -> Iterator[Record]:
    """pcapng: sections (SHB + IDBs + packet blocks), each in its own byte order."""
    name = summary.path
    log = AnomalyLog(summary.anomalies, limits)
    max_rec = limits.max_record_bytes
    max_block = limits.max_block_bytes

    # The first Section Header Block decides whether this is a capture at all: damage there is
    # fatal (libpcap fails pcap_open_offline, tshark reports the file as damaged).
    sec, blen, buf = _first_shb(inp, buf, name)
    buf = inp.fill(buf, 0, blen)
    if len(buf) < blen:
        raise CaptureError(f"{name}: cut short inside the pcapng section header block")
    try:
        _check_shb(sec, buf[:blen])
    except _Stop as e:
        raise CaptureError(f"{name}: {e.why}") from None
    if sec.u32(buf, blen - 4)[0] != blen:
        raise CaptureError(f"{name}: pcapng section header block trailer does not match its length")
    summary.format = "pcapng" + suffix

    ifaces: list[_Iface] = []
    pos, base, end = blen, 0, len(buf)
    frame = packets = 0
    last_ts = 0
    epb, epb_whole = sec.epb, sec.epb_whole
    new, set_frame, set_ts, set_lt = _new, _set_frame, _set_ts, _set_lt
    set_data, set_wirelen = _set_data, _set_wirelen
    hdr = sec.hdr
    u32 = sec.u32
    try:
        while True:
            if end - pos < 12:
                base += pos
                buf = inp.fill(buf, pos, 12)
                pos, end = 0, len(buf)
                summary.packets, summary.bytes_read = packets, base
                if end == 0:
                    return
                if end < 12:
                    raise _Stop("capture-truncated", f"the file ends inside a block header ({end} bytes)")
            if end - pos >= 28:  # one unpack reads an EPB's header and packet fields at once
                btype, blen, ifid, ts_hi, ts_lo, caplen, wirelen = epb_whole(buf, pos)
                unpacked = True
            else:
                btype, blen = hdr(buf, pos)
                unpacked = False
            if btype == _BT_SHB:
                bom = buf[pos + 8 : pos + 12]
                if bom not in (_BOM_LE, _BOM_BE):
                    raise _Stop("capture-damaged", f"section header with bad byte-order magic {bom.hex()}")
                sec = _SECTIONS["<" if bom == _BOM_LE else ">"]
                epb, epb_whole, hdr, u32 = sec.epb, sec.epb_whole, sec.hdr, sec.u32
                blen = u32(buf, pos + 4)[0]
                if blen > SHB_MAX_BYTES:
                    raise _Stop("capture-damaged", f"section header block of {blen} bytes (> 1 MiB)")
            if blen < 12:
                raise _Stop("capture-damaged", f"block type 0x{btype:x} has length {blen} < 12")
            if blen > max_block:
                raise _Stop(
                    "capture-damaged",
                    f"block type 0x{btype:x} claims {blen} bytes, more than the {max_block}-byte maximum",
                )
            stop = pos + blen
            if stop > end:
                base += pos
                buf = inp.fill(buf, pos, blen)
                pos, end = 0, len(buf)
                summary.packets, summary.bytes_read = packets, base
                stop = blen
                if stop > end:
                    raise _Stop(
                        "capture-truncated",
                        f"block type 0x{btype:x} of {blen} bytes is cut short ({end} bytes left)",
                    )
            if u32(buf, stop - 4)[0] != blen:
                raise _Stop(
                    "capture-damaged",
                    f"block type 0x{btype:x}: trailing length {u32(buf, stop - 4)[0]} does not "
                    f"match leading length {blen}",
                )
            if blen & 3:
                log(Anomaly("pcapng-block-length-unaligned", f"block length {blen} is not a multiple of 4"))

            if btype == _BT_EPB:
                if blen < 32:
                    raise _Stop("capture-damaged", f"enhanced packet block of {blen} bytes (< 32)")
                if not unpacked:
                    ifid, ts_hi, ts_lo, caplen, wirelen = epb(buf, pos + 8)
                if ifid >= len(ifaces):
                    raise _Stop(
                        "capture-damaged",
                        f"packet on interface {ifid}, but the section defines {len(ifaces)}",
                    )
                if caplen > blen - 32:
                    raise _Stop(
                        "capture-damaged",
                        f"packet claims {caplen} captured bytes, its block holds {blen - 32}",
                    )
                if caplen > max_rec:
                    raise _Stop(
                        "capture-damaged",
                        f"packet claims {caplen} captured bytes, more than the {max_rec}-byte maximum",
                    )
                iface = ifaces[ifid]
                ts = ((ts_hi << 32) | ts_lo) * iface.mul  # iface.ts_ns() inlined: the hot path
                if iface.div != 1:
                    ts //= iface.div
                if iface.shift:
                    ts >>= iface.shift
                ts += iface.offset_ns
                frame += 1
                packets += 1
                if ts < last_ts or caplen > wirelen or (iface.snaplen and caplen > iface.snaplen):
                    _record_oddities(log, frame, 0, 1, ts, last_ts, caplen, wirelen, iface.snaplen)
                last_ts = ts
                start = pos + 28
                if skip is not None and iface.linktype == 1 and skip(buf, start, caplen, ts):
                    pos = stop
                    continue
                rec = new(Record)  # _record() inlined: the EPB branch is the hot path
                set_frame(rec, frame)
                set_ts(rec, ts)
                set_lt(rec, iface.linktype)
                set_data(rec, buf[start : start + caplen])
                set_wirelen(rec, wirelen)
                yield rec
            elif btype == _BT_IDB:
                if blen < 20:
                    raise _Stop("capture-damaged", f"interface description block of {blen} bytes (< 20)")
                block = buf[pos:stop]
                lt, _reserved, snaplen = sec.idb(block, 8)
                ifaces.append(_Iface(lt, snaplen, *_ts_conversion(sec, block, log, frame + 1)))
            elif btype == _BT_SPB:
                if blen < 16:
                    raise _Stop("capture-damaged", f"simple packet block of {blen} bytes (< 16)")
                if not ifaces:
                    raise _Stop("capture-damaged", "simple packet block before any interface")
                iface = ifaces[0]
                (wirelen,) = u32(buf, pos + 8)
                caplen = min(wirelen, blen - 16)
                if iface.snaplen:
                    caplen = min(caplen, iface.snaplen)
                if caplen > max_rec:
                    raise _Stop(
                        "capture-damaged",
                        f"packet claims {caplen} captured bytes, more than the {max_rec}-byte maximum",
                    )
                frame += 1
                packets += 1
                # an SPB has no timestamp: reuse the previous packet's so time never jumps to 1970
                start = pos + 12
                yield _record(frame, last_ts, iface.linktype, buf[start : start + caplen], wirelen)
            elif btype == _BT_PB:
                if blen < 32:
                    raise _Stop("capture-damaged", f"packet block of {blen} bytes (< 32)")
                ifid, _drops, ts_hi, ts_lo, caplen, wirelen = sec.pb(buf, pos + 8)
                if ifid >= len(ifaces):
                    raise _Stop(
                        "capture-damaged",
                        f"packet on interface {ifid}, but the section defines {len(ifaces)}",
                    )
                if caplen > blen - 32 or caplen > max_rec:
                    raise _Stop(
                        "capture-damaged",
                        f"packet claims {caplen} captured bytes, its block holds {blen - 32}",
                    )
                iface = ifaces[ifid]
                ts = iface.ts_ns((ts_hi << 32) | ts_lo)
                frame += 1
                packets += 1
                if ts < last_ts or caplen > wirelen or (iface.snaplen and caplen > iface.snaplen):
                    _record_oddities(log, frame, 0, 1, ts, last_ts, caplen, wirelen, iface.snaplen)
                last_ts = ts
                start = pos + 28
                yield _record(frame, ts, iface.linktype, buf[start : start + caplen], wirelen)
            elif btype == _BT_SHB:
                _check_shb(sec, buf[pos:stop])
                ifaces = []  # interface ids restart in every section
            elif btype in _FRAME_ONLY_BLOCKS:
                frame += 1
            # every other block (ISB, NRB, DSB, unknown) is skipped, as libpcap and tshark do
            pos = stop
    except _Stop as e:
        _damage(summary, e.name, e.why, packets, base + pos)
    finally:
        summary.packets, summary.bytes_read = packets, base + pos


def _first_shb(inp: _Input, buf: bytes, name: str) -> tuple[_Section, int, bytes]:
    """Byte order and length of the first Section Header Block (and the buffer), or CaptureError."""
    buf = inp.fill(buf, 0, 12)
    if len(buf) < 12:
        raise CaptureError(f"{name}: cut short inside the pcapng section header block")
    bom = buf[8:12]
    if bom not in (_BOM_LE, _BOM_BE):
        raise CaptureError(f"{name}: pcapng section header with bad byte-order magic {bom.hex(' ')}")
    sec = _SECTIONS["<" if bom == _BOM_LE else ">"]
    (blen,) = sec.u32(buf, 4)
    if blen < 28 or blen > SHB_MAX_BYTES or blen & 3:
        raise CaptureError(f"{name}: pcapng section header block has a bad length ({blen})")
    return sec, blen, buf
