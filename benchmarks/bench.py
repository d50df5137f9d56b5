#!/usr/bin/env python3
"""wsdiag against tshark and the `tcpdump -r` floor, on the same generated captures, by hand.

For every size x format asked for, this makes (or reuses) a seeded corpus with
benchmarks/make_corpus.py (ground truth in <file>.truth.json), then runs each tool as a whole
fresh process, `--runs` times, in turn on the same file:

  wsdiag   python -m analyzer analyze F --format json > out.json   (the whole CLI: start-up,
           reading, diagnosis, report)
  tshark   tshark -n -r F -Y 'http.request or http.response' -d tcp.port==8000,http
           -d tcp.port==8080,http -T fields -e frame.number -e tcp.stream -e http.request.method
           -e http.request.uri -e http.response.code
           (single pass, TCP reassembly on as by default: "find the HTTP upgrade requests and
           their answers", the job wsdiag does; port 80 is HTTP by default)
  tcpdump  tcpdump -r F -w /dev/null tcp   (read + BPF filter + write nothing: the floor)

and prints medians, ratios, MB/s, packets/s, peak RSS (from wait4() of each child), and whether
wsdiag reported exactly the ground-truth handshakes with the right outcome (and, with
--compare-slow, the same handshakes as its own slow path, run in-process, untimed).

  python3 benchmarks/bench.py --sizes 50,200,1000 --formats pcap,pcapng --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


@dataclass
class Run:
    wall: float
    rss_kb: int
    rc: int


def run_child(cmd: list[str], stdout: Path | None) -> Run:
    """Wall time and peak RSS of one fresh child process (wait4 gives that child's own rusage)."""
    out = open(stdout, "wb") if stdout else subprocess.DEVNULL  # noqa: SIM115
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if stdout:
            out.close()  # type: ignore[union-attr]
    return Run(wall, int(usage.ru_maxrss), proc.returncode)


def make_corpus(
    size_mb: float, fmt: str, seed: int, workdir: Path, handshakes: int | None, s_per_mb: float | None
) -> Path:
    extra, name = [], f"wsdiag-bench-{size_mb:g}MB-s{seed}"
    if handshakes is not None:
        extra += ["--handshakes", str(handshakes)]
        name += f"-h{handshakes}"
    if s_per_mb is not None:
        extra += ["--duration", f"{max(60.0, size_mb * s_per_mb):g}"]
        name += f"-d{s_per_mb:g}"
    path = workdir / f"{name}.{fmt}"
    if not (path.exists() and Path(f"{path}.truth.json").exists()):
        print(f"# making {path} ...", file=sys.stderr, flush=True)
        gen = [sys.executable, str(HERE / "make_corpus.py"), "--size-mb", f"{size_mb:g}", "--format", fmt]
        subprocess.run([*gen, "--seed", str(seed), "--out", str(path), *extra], check=True)
    return path


def commands(path: Path) -> dict[str, list[str]]:
    return {
        "wsdiag": [sys.executable, "-m", "analyzer", "analyze", str(path), "--format", "json"],
        "tshark": [
            "tshark",
            "-n",
            "-r",
            str(path),
            "-Y",
            "http.request or http.response",
            "-d",
            "tcp.port==8000,http",
            "-d",
            "tcp.port==8080,http",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "tcp.stream",
            "-e",
            "http.request.method",
            "-e",
            "http.request.uri",
            "-e",
            "http.response.code",
        ],
        "tcpdump": ["tcpdump", "-r", str(path), "-w", "/dev/null", "tcp"],
    }


def truth_check(report_path: Path, truth_path: Path) -> tuple[bool, str]:
    """Exactly the ground-truth WebSocket handshakes, each with its answer and failed/upgraded."""
    truth = json.loads(truth_path.read_text())
    expected = sorted(
        (t["client"], t["server"], t["status"], t["status"] != 101) for t in truth["handshake_list"]
    )
    doc = json.loads(report_path.read_text())
    got = sorted(
        (h["client"], h["server"], (h.get("response") or {}).get("status"), bool(h["failed"]))
        for h in doc["handshakes"]
        if h.get("request") and h["request"]["target"].startswith("/xiaozhi/v1/")
    )
    if got == expected:
        return True, f"{len(got)}/{len(expected)} exact"
    missing = len(set(expected) - set(got))
    extra = len(set(got) - set(expected))
    return False, f"{len(got)} found, {len(expected)} expected, {missing} missing/wrong, {extra} extra"


def slow_check(path: Path) -> str:
    """Fast path vs slow path in-process (untimed): same handshakes, streams, answers."""
    sys.path.insert(0, str(ROOT))
    from analyzer.limits import DEFAULT_LIMITS
    from analyzer.model import InputSummary
    from analyzer.pipeline import select_handshakes
    from analyzer.run import harvest_file

    seen = []
    for fast in (True, False):
        summary = InputSummary(str(path))
        harvest = harvest_file(str(path), summary, DEFAULT_LIMITS, fast=fast)
        seen.append((repr(select_handshakes(harvest, None)), repr(summary), harvest.connections))
    return "same" if seen[0] == seen[1] else "DIFFERENT"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="200,1000", help="corpus sizes in MB (10^6 bytes), comma-separated")
    ap.add_argument("--formats", default="pcap,pcapng")
    ap.add_argument("--runs", type=int, default=3, help="runs of each tool per file (median reported)")
    ap.add_argument("--tshark-runs", type=int, default=None, help="runs of tshark (default: --runs)")
    ap.add_argument("--tools", default="wsdiag,tshark,tcpdump")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--handshakes", type=int, default=None, help="handshakes per corpus (generator default: 2 per MB)"
    )
    ap.add_argument(
        "--seconds-per-mb",
        type=float,
        default=None,
        help="capture duration per MB (generator default: 600 s whatever the size, so bigger corpora"
        " have more connections open at once); e.g. 3 keeps that number the same at every size",
    )
    ap.add_argument("--workdir", default="/tmp", help="where corpora and outputs go (not the repo)")
    ap.add_argument("--compare-slow", action="store_true", help="also check fast path == slow path")
    ap.add_argument("--delete", action="store_true", help="delete each corpus after its runs")
    ap.add_argument("--json", help="also write all figures to this JSON file")
    a = ap.parse_args(argv)

    workdir = Path(a.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tools = [t for t in a.tools.split(",") if t]
    for t in tools:
        if t != "wsdiag" and shutil.which(t) is None:
            print(f"# {t} not found; skipped", file=sys.stderr)
    tools = [t for t in tools if t == "wsdiag" or shutil.which(t)]
    rows = []
    for size in [float(s) for s in a.sizes.split(",")]:
        for fmt in a.formats.split(","):
            path = make_corpus(size, fmt, a.seed, workdir, a.handshakes, a.seconds_per_mb)
            truth_path = Path(f"{path}.truth.json")
            truth = json.loads(truth_path.read_text())
            nbytes, npackets = path.stat().st_size, truth["packets"]
            cmds = commands(path)
            results: dict[str, list[Run]] = {t: [] for t in tools}
            report = workdir / f"{path.name}.wsdiag.json"
            runs = {t: (a.tshark_runs or a.runs) if t == "tshark" else a.runs for t in tools}
            for i in range(max(runs.values())):
                for t in tools:  # interleaved, so a slow spell of the machine hits all tools alike
                    if i < runs[t]:
                        out = report if t == "wsdiag" else (workdir / f"{path.name}.{t}.out")
                        results[t].append(run_child(cmds[t], out))
            row: dict[str, object] = {
                "size_mb": size,
                "format": fmt,
                "file_bytes": nbytes,
                "packets": npackets,
            }
            for t, rs in results.items():
                row[t] = {
                    "median_s": statistics.median(r.wall for r in rs),
                    "runs_s": [round(r.wall, 3) for r in rs],
                    "peak_rss_mb": max(r.rss_kb for r in rs) / 1024,
                    "exit": sorted({r.rc for r in rs}),
                }
            if "wsdiag" in results:
                ok, detail = truth_check(report, truth_path)
                row["truth"] = {"exact": ok, "detail": detail}
                if a.compare_slow:
                    row["slow_path"] = slow_check(path)
            rows.append(row)
            print_row(row, tools)
            if a.delete:
                for p in (path, truth_path):
                    p.unlink(missing_ok=True)
    print_table(rows, tools)
    if a.json:
        Path(a.json).write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))
    return 0


def print_row(row: dict, tools: list[str]) -> None:
    parts = [f"{row['size_mb']:g} MB {row['format']}"]
    for t in tools:
        r = row[t]
        parts.append(f"{t} {r['median_s']:.2f}s {r['peak_rss_mb']:.0f}MB {r['runs_s']}")
    if "truth" in row:
        parts.append(f"truth: {row['truth']['detail']}")
    if "slow_path" in row:
        parts.append(f"slow path: {row['slow_path']}")
    print("# " + " | ".join(parts), file=sys.stderr, flush=True)


def print_table(rows: list[dict], tools: list[str]) -> None:
    print(f"# {machine()}")
    head = ["size", "fmt", "packets"]
    for t in tools:
        head += [f"{t} s", f"{t} RSS MB"]
    head += ["wsdiag MB/s", "wsdiag pkt/s"]
    if "tshark" in tools and "wsdiag" in tools:
        head.append("tshark/wsdiag")
    if "tcpdump" in tools and "wsdiag" in tools:
        head.append("wsdiag/tcpdump")
    head.append("truth")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [f"{r['file_bytes'] / 1e6:.0f} MB", r["format"], str(r["packets"])]
        for t in tools:
            cells += [f"{r[t]['median_s']:.2f}", f"{r[t]['peak_rss_mb']:.0f}"]
        if "wsdiag" in tools:
            w = r["wsdiag"]["median_s"]
            cells += [f"{r['file_bytes'] / 1e6 / w:.0f}", f"{r['packets'] / w / 1e3:.0f}k"]
            if "tshark" in tools:
                cells.append(f"{r['tshark']['median_s'] / w:.1f}x")
            if "tcpdump" in tools:
                cells.append(f"{w / r['tcpdump']['median_s']:.1f}x")
            cells.append(
                ("exact" if r["truth"]["exact"] else "WRONG")
                + (f", slow path {r['slow_path']}" if "slow_path" in r else "")
            )
        print("| " + " | ".join(cells) + " |")


def machine() -> str:
    model = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} CPUs ({model}), {mem:.1f} GiB RAM, Python {sys.version.split()[0]}"


if __name__ == "__main__":
    sys.exit(main())
