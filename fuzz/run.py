"""Run one fuzz target: `python fuzz/run.py TARGET --iterations N` (see fuzz/README.md).

TARGET is reader, reassembler, http, frames or pipeline (fuzz/targets.py). Engines:
  atheris  coverage-guided (libFuzzer) when `pip install atheris` worked; the corpus grows in
           fuzz/corpus/TARGET/ and is seeded from the public captures on first use;
  mutate   a seeded byte-level mutator (bit flips, interesting lengths, insert/delete/splice,
           truncation) over the same seeds; needs nothing but Python.
`--engine auto` (the default) picks atheris if it imports, else mutate.

Every input that raises an exception the target does not document (targets.ALLOWED), breaks a
target's invariant (AssertionError), takes longer than --timeout seconds or runs out of memory
(--rss-mb address-space limit) is saved to fuzz/crashes/TARGET-<sha1>.bin with its traceback in
a .txt beside it; fuzzing goes on, and each distinct crash site is printed once. The last line
printed is the tally: iterations, seconds, iterations/s, crashes. Exit status 1 if any crash.

Replay saved inputs: `python fuzz/run.py TARGET --replay fuzz/crashes/TARGET-*.bin`.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import random
import resource
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
CRASHES = HERE / "crashes"
CORPUS = HERE / "corpus"


class Timeout(BaseException):
    """Raised by the alarm when one input runs too long (BaseException: targets can't swallow it)."""


class Harness:
    """Wraps a target: counts runs, classifies outcomes, saves crashers, prints the tally."""

    def __init__(
        self,
        target: str,
        fn: Callable[[bytes], None],
        allowed: tuple[type[BaseException], ...],
        iterations: int,
        timeout: float,
    ) -> None:
        self.target, self.fn, self.allowed = target, fn, allowed
        self.iterations, self.timeout = iterations, timeout
        self.count = 0
        self.crashes = 0
        self.sites: set[str] = set()
        self.start = time.monotonic()
        self.last_report = self.start

    def __call__(self, data: bytes) -> None:
        self.count += 1
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        try:
            self.fn(data)
        except self.allowed:
            pass
        except (Exception, Timeout, MemoryError, RecursionError) as e:
            signal.setitimer(signal.ITIMER_REAL, 0)
            self.crash(data, e)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        now = time.monotonic()
        if now - self.last_report > 30:
            self.last_report = now
            print(
                f"# {self.target}: {self.count} iterations, {self.count / (now - self.start):.0f}/s, "
                f"{self.crashes} crashes",
                flush=True,
            )
        if self.count == self.iterations:
            self.tally()

    def crash(self, data: bytes, e: BaseException) -> None:
        self.crashes += 1
        tb = traceback.extract_tb(e.__traceback__)
        where = next((f for f in reversed(tb) if "/analyzer/" in f.filename), tb[-1] if tb else None)
        site = (
            f"{type(e).__name__} at {where.filename.rsplit('/', 2)[-1]}:{where.lineno}"
            if where
            else type(e).__name__
        )
        CRASHES.mkdir(exist_ok=True)
        digest = hashlib.sha1(data).hexdigest()[:16]
        path = CRASHES / f"{self.target}-{digest}.bin"
        if site not in self.sites or len(list(CRASHES.glob(f"{self.target}-*.bin"))) < 200:
            path.write_bytes(data)
            path.with_suffix(".txt").write_text(
                f"{site}\n\n" + "".join(traceback.format_exception(e)), encoding="utf-8"
            )
        if site not in self.sites:
            self.sites.add(site)
            print(f"! {self.target}: new crash: {site}: {str(e)[:200]!r} -> {path}", flush=True)

    def tally(self) -> None:
        secs = time.monotonic() - self.start
        print(
            f"{self.target}: {self.count} iterations in {secs:.1f} s = {self.count / max(secs, 1e-9):.0f}/s; "
            f"{self.crashes} crashing inputs at {len(self.sites)} distinct sites"
            + (f": {sorted(self.sites)}" if self.sites else ""),
            flush=True,
        )


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise Timeout("input took longer than the --timeout")


def mutate(data: bytes, rnd: random.Random, pool: list[bytes], max_len: int) -> bytes:
    """1-8 byte-level edits of the kinds that break binary parsers (AFL/libFuzzer havoc style)."""
    buf = bytearray(data)
    interesting = (
        0,
        1,
        0x7F,
        0x80,
        0xFF,
        0x100,
        0x7FFF,
        0x8000,
        0xFFFF,
        0x10000,
        0x7FFFFFFF,
        0x80000000,
        0xFFFFFFFF,
        0xFFFFFFF0,
        262_144,
        262_145,
        16 * 1024 * 1024 + 4,
    )
    for _ in range(rnd.randint(1, 8)):
        op = rnd.randrange(9)
        n = len(buf)
        if op == 0 and n:
            buf[rnd.randrange(n)] ^= 1 << rnd.randrange(8)
        elif op == 1 and n:
            buf[rnd.randrange(n)] = rnd.randrange(256)
        elif op == 2 and n >= 4:
            v = rnd.choice(interesting)
            size = rnd.choice((1, 2, 4))
            at = rnd.randrange(n - size + 1)
            buf[at : at + size] = (v & ((1 << (8 * size)) - 1)).to_bytes(size, rnd.choice(("little", "big")))
        elif op == 3:
            at = rnd.randrange(n + 1)
            buf[at:at] = rnd.randbytes(rnd.randint(1, 16))
        elif op == 4 and n:
            at = rnd.randrange(n)
            del buf[at : at + rnd.randint(1, 64)]
        elif op == 5 and n:
            at = rnd.randrange(n)
            piece = buf[at : at + rnd.randint(1, 256)]
            to = rnd.randrange(n + 1)
            buf[to:to] = piece
        elif op == 6 and pool:
            other = rnd.choice(pool)
            if other:
                a = rnd.randrange(len(other))
                to = rnd.randrange(n + 1)
                buf[to:to] = other[a : a + rnd.randint(1, 512)]
        elif op == 7 and n:
            del buf[rnd.randrange(n) :]
        elif op == 8 and n:
            at = rnd.randrange(n)
            buf[at : at + 1] = bytes([rnd.choice((0x00, 0x0A, 0x0D, 0x20, 0x3A, 0x7F, 0xFF, 0x1B, 0x80))])
    return bytes(buf[:max_len])


def run_mutate(h: Harness, seeds: list[bytes], seed: int, max_len: int) -> None:
    rnd = random.Random(seed)
    pool = [s for s in seeds if s] or [b""]
    for s in pool:
        if h.count >= h.iterations:
            return
        h(s)
    while h.count < h.iterations:
        h(mutate(rnd.choice(pool), rnd, pool, max_len))


def run_atheris(h: Harness, target: str, seeds: list[bytes], max_len: int, jobs_args: list[str]) -> None:
    atheris = importlib.import_module("atheris")
    corpus = CORPUS / target
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for s in seeds:
            (corpus / hashlib.sha1(s).hexdigest()).write_bytes(s)
    CRASHES.mkdir(exist_ok=True)
    argv = [
        sys.argv[0],
        f"-runs={h.iterations}",
        f"-max_len={max_len}",
        "-timeout=30",
        f"-artifact_prefix={CRASHES}/{target}-libfuzzer-",
        "-print_final_stats=1",
        *jobs_args,
        str(corpus),
    ]
    atheris.Setup(argv, h)
    atheris.Fuzz()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", choices=["reader", "reassembler", "http", "frames", "pipeline"])
    ap.add_argument("--iterations", "-n", type=int, default=100_000)
    ap.add_argument("--engine", choices=["auto", "atheris", "mutate"], default="auto")
    ap.add_argument("--seed", type=int, default=0, help="random seed of the mutate engine")
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds one input may take")
    ap.add_argument("--rss-mb", type=int, default=1024, help="address-space limit above the start (MiB)")
    ap.add_argument(
        "--editcap", type=int, default=2, help="editcap -E 0.02 mutants per small capture (reader)"
    )
    ap.add_argument("--replay", nargs="+", type=Path, help="run these saved inputs once and report")
    args = ap.parse_args()

    engine = args.engine
    if engine == "auto":
        engine = "atheris" if importlib.util.find_spec("atheris") else "mutate"
    if engine == "atheris" and not args.replay:
        atheris = importlib.import_module("atheris")
        with atheris.instrument_imports(include=["analyzer"]):
            import targets
    else:
        import targets

    fn, allowed = targets.TARGETS[args.target], targets.ALLOWED[args.target]
    signal.signal(signal.SIGALRM, _on_alarm)
    if args.replay:
        h = Harness(args.target, fn, allowed, len(args.replay), args.timeout)
        for p in args.replay:
            before = h.crashes
            h(p.read_bytes())
            print(f"{p}: {'CRASH' if h.crashes > before else 'ok'}")
        return 1 if h.crashes else 0

    seeds = targets.seeds(args.target, args.editcap)
    # Bound memory: an allocation proportional to a length field shows up as MemoryError.
    soft = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 + args.rss_mb * 1024 * 1024
    if engine == "mutate":
        resource.setrlimit(resource.RLIMIT_AS, (soft + 512 * 1024 * 1024, resource.RLIM_INFINITY))
    h = Harness(args.target, fn, allowed, args.iterations, args.timeout)
    print(f"# {args.target}: engine {engine}, {len(seeds)} seeds, {args.iterations} iterations", flush=True)
    if engine == "atheris":
        run_atheris(
            h, args.target, seeds, targets.MAX_LEN[args.target], [f"-rss_limit_mb={args.rss_mb + 512}"]
        )
    else:
        run_mutate(h, seeds, args.seed, targets.MAX_LEN[args.target])
    return 1 if h.crashes else 0


if __name__ == "__main__":
    sys.exit(main())
