"""Fuzz targets: one function per parser that takes arbitrary bytes, plus its seed corpus.

Each target turns the fuzzer's bytes into calls of one stage's public API and checks what must
hold whatever the input (bounded buffers, contiguous stream offsets, ...). The only exceptions a
target may let escape are the documented ones in `ALLOWED` (reliability.md §4 G1, the websockets
`fuzz_http11_request_parser.py` pattern); anything else is a crash. `AssertionError` raised by a
target's own checks is a crash too: it names a broken invariant.

The targets are plain functions so that `tests/test_hostile.py` can replay crash inputs and
`run.py` can drive them with atheris or with its own mutator alike.
"""

from __future__ import annotations

import gzip
import io
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from analyzer import http1, redact
from analyzer.errors import CaptureError
from analyzer.http_stream import MessageReader, Mode
from analyzer.limits import Limits
from analyzer.model import InputSummary
from analyzer.sources import pcapfile
from analyzer.sources.decode import AnomalyLog, decode
from analyzer.tcp import MOD, Piece, StreamReassembler
from analyzer.wsframes import Deflate, FrameDecoder, negotiated_deflate

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ROOT / "tests" / "data" / "public"
CAPTURES = ROOT / "captures"

# Small limits make the fuzzer reach every "limit hit" branch with small inputs.
SMALL = Limits(
    max_head_bytes=2048,
    max_headers=20,
    max_body_bytes=512,
    max_ooo_bytes=4096,
    max_frames=16,
    max_frame_payload=256,
    max_inflate_bytes=4096,
    max_anomaly_samples=5,
)


class Bytes:
    """Reads small integers off the fuzzer's bytes; returns zeros once they run out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def left(self) -> int:
        return len(self.data) - self.pos

    def u8(self) -> int:
        if self.pos >= len(self.data):
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def u16(self) -> int:
        return self.u8() | (self.u8() << 8)

    def u32(self) -> int:
        return self.u16() | (self.u16() << 16)

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def chunks(data: bytes, sizes: Bytes) -> list[bytes]:
    """`data` cut into pieces whose sizes come from `sizes` (1..256 bytes, or the rest)."""
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        n = sizes.u8()
        n = len(data) - pos if n == 0 else n
        out.append(data[pos : pos + n])
        pos += n
    return out


# ---- 1. file reader -----------------------------------------------------------------------


def reader(data: bytes) -> None:
    """`read_records` over the bytes (gzip undone if they start with its magic), every record
    decoded. Allowed: `CaptureError` (the file cannot be read at all)."""
    stream: io.IOBase = io.BytesIO(data)
    if data[:2] == b"\x1f\x8b":
        stream = pcapfile._GzipInput(stream, True)  # type: ignore[arg-type]
    summary = InputSummary("fuzz")
    log = AnomalyLog(summary.anomalies)
    n = 0
    try:
        for rec in pcapfile.read_records(stream, summary):  # type: ignore[arg-type]
            n += 1
            assert len(rec.data) <= pcapfile.DEFAULT_LIMITS.max_record_bytes
            decode(rec.linktype, rec.data, rec.frame, rec.ts_ns, log)
    finally:
        stream.close()
    assert summary.packets == n, (summary.packets, n)
    assert summary.bytes_read <= len(data) or data[:2] == b"\x1f\x8b"
    damaged = [a for a in summary.anomalies if a.name.startswith("capture-")]
    assert len(damaged) <= 1 and bool(damaged) == (not summary.readable_to_end)
    assert len(summary.anomalies) < 200  # rate-limited


# ---- 2. TCP reassembler -------------------------------------------------------------------


def reassembler(data: bytes) -> None:
    """Random segments of a known stream (in any order, duplicated, overlapping, some with
    conflicting bytes, some wild) fed to one `StreamReassembler`, with ACKs, FIN and flushes.

    Checks: delivered pieces are contiguous (offset = previous end + gap), never zero-filled,
    and where no conflicting or wild segment was fed every delivered byte equals the stream's
    byte at that offset; out-of-order memory stays within `max_ooo` plus one segment."""
    b = Bytes(data)
    max_ooo = 64 + b.u16() % 8192
    isn = b.u32()
    length = 1 + b.u16() % 16384
    truth = random.Random(b.u32()).randbytes(length)
    r = StreamReassembler(max_ooo)
    nxt = 0  # the reassembler's stream offsets start at 0 (SYN + 1, or the first byte seen)
    exact = True
    anchor: int | None = None

    def check(pieces: list[Piece]) -> None:
        nonlocal nxt, anchor
        if anchor is None and r._base is not None:
            anchor = (r._base - isn) % MOD
        for p in pieces:
            assert p.gap >= 0 and (p.data or p.gap), p
            assert p.offset == nxt + p.gap, (p.offset, nxt, p.gap)
            nxt = p.offset + len(p.data)
            if exact and anchor is not None and p.data and anchor <= length:
                start = anchor + p.offset
                assert truth[start : start + len(p.data)] == p.data, (start, len(p.data))
        assert r._pending_bytes <= max_ooo + 1500, (r._pending_bytes, max_ooo)
        assert r._pending_bytes == sum(len(d) for d, _, _ in r._pending.values())

    steps = 0
    while b.left() and steps < 2000:
        steps += 1
        op = b.u8() % 10
        if op <= 4:
            off = b.u16() % (length + 1)
            n = b.u16() % 1500
            payload = truth[off : off + n]
            seq = (isn + off) % MOD
            mode = b.u8()
            if mode < 12:  # conflicting bytes over the same range
                payload = bytes(x ^ 0x5A for x in payload)
                exact = False
            elif mode < 16:  # anywhere in sequence space
                seq = b.u32()
                exact = False
            check(r.feed(seq, payload, steps, steps))
        elif op <= 6:
            if b.u8() < 250:
                ack = (isn + b.u16() % (length + 2)) % MOD
            else:  # an ACK for bytes never sent (forged): the stream skips to it (a named gap),
                ack = b.u32()  # so later data is placed relative to that; not checked for bytes
                exact = False
            check(r.acked(ack))
        elif op == 7:
            r.syn((isn - 1) % MOD)
        elif op == 8:
            off = b.u16() % (length + 1)
            r.fin((isn + off) % MOD, b.u16() % 1500)
        else:
            check(r.flush())
            assert not r._pending and r._pending_bytes == 0
        if b.u8() == 0:
            r.discard = True
    check(r.flush())


# ---- 3. HTTP head parser and message reader ------------------------------------------------


def http(data: bytes) -> None:
    """The head parsers on the whole input, then a `MessageReader` (request or response side)
    fed the input in pieces, with gaps, releases and an end. Checks the buffers stay bounded."""
    if not data:
        return
    ctl, body = data[0], data[1:]
    for parse in (http1.parse_request_head, http1.parse_response_head):
        head = parse(body, SMALL.max_headers)
        assert len(head.headers) <= SMALL.max_headers
        http1.status_code(head)
        http1.content_length(head.headers)
        http1.is_chunked(head.headers)
        # what later stages do with captured header values
        negotiated_deflate([v for n, v in head.headers if n.lower() == "sec-websocket-extensions"])
        redact.header_secrets(head.headers)
        redact.query_secrets(head.start[1])
        end = http1.find_head_end(body)
        redact.body_secrets(body[end:] if end >= 0 else b"")
    http1.find_head_end(body)
    http1.looks_like_request(body)
    reader = MessageReader(bool(ctl & 1), SMALL)
    sizes = Bytes(body[-64:][::-1])
    for i, piece in enumerate(chunks(body, sizes)):
        for msg in reader.feed(piece, i, i + 1):
            assert len(msg.body) <= SMALL.max_body_bytes
            assert len(msg.head.headers) <= SMALL.max_headers
        assert len(reader.buf) <= SMALL.max_head_bytes + 2 * 256 + 1024, (len(reader.buf), reader.mode)
        if ctl & 2 and i % 7 == 3:
            reader.gap(i * 13)
        if ctl & 4 and reader.mode is Mode.HOLD and i % 5 == 2:
            reader.feed(reader.release(), i, 0)
    if ctl & 8:
        reader.stop()
    for msg in reader.end():
        assert len(msg.body) <= SMALL.max_body_bytes


# ---- 4. WebSocket frame decoder ------------------------------------------------------------


def frames(data: bytes) -> None:
    """`FrameDecoder.feed` over the input in pieces, both directions, with and without
    permessage-deflate (window bits and context takeover from the first byte), then `finish`.
    Checks every frame's kept payload and the frame count stay within the limits."""
    if not data:
        return
    ctl, body = data[0], data[1:]
    deflate = (
        Deflate(bool(ctl & 2), bool(ctl & 4), 8 + (ctl >> 4) % 8, 8 + (ctl >> 5) % 8) if ctl & 1 else None
    )
    dec = FrameDecoder("client" if ctl & 8 else "server", deflate, SMALL)
    produced = 0
    sizes = Bytes(body[-64:][::-1])
    for i, piece in enumerate(chunks(body, sizes)):
        for f in dec.feed(piece, i, i + 1):
            produced += 1
            assert len(f.payload) <= SMALL.max_frame_payload, len(f.payload)
    produced += len(dec.finish())
    assert produced <= SMALL.max_frames, produced
    assert dec.done


# ---- 5. the whole pipeline -----------------------------------------------------------------


def pipeline(data: bytes) -> None:
    """A capture's bytes all the way: reader, reassembly, handshakes, every rule, the JSON and
    the text report (verbose, secrets shown, so every field is rendered). Mutated real captures
    reach the rules with damaged certificates, URLs and headers no unit test wrote: two crashes
    in certificate parsing and one in URL handling were found this way. Nothing may escape."""
    from analyzer.report import terminal, tree
    from analyzer.run import analyze_path

    with tempfile.NamedTemporaryFile(suffix=".pcap") as f:
        f.write(data)
        f.flush()
        report = analyze_path(f.name, limits=SMALL)
    for _chunk in tree.json_chunks([report], show_secrets=True):
        pass
    doc = {**tree.head([report], True), "handshakes": tree.handshake_docs([report], True)}
    doc["ota"] = tree.ota_docs([report], True)
    terminal.render(doc, io.StringIO(), tree.input_counts([report]), color=False, verbose=True)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "reader": reader,
    "reassembler": reassembler,
    "http": http,
    "frames": frames,
    "pipeline": pipeline,
}

ALLOWED: dict[str, tuple[type[BaseException], ...]] = {
    "reader": (CaptureError,),
    "reassembler": (),
    "http": (),
    "frames": (),
    "pipeline": (),
}

MAX_LEN = {"reader": 65536, "reassembler": 4096, "http": 8192, "frames": 8192, "pipeline": 65536}


# ---- seeds ---------------------------------------------------------------------------------


def _capture_files() -> list[Path]:
    files = [p for p in sorted(PUBLIC.rglob("*")) if p.is_file() and p.suffix in (".pcap", ".pcapng", ".gz")]
    return files + sorted(CAPTURES.glob("*.pcap*")) + sorted(CAPTURES.glob("*/*.pcap"))


def _editcap_variants(files: list[Path], per_file: int) -> list[bytes]:
    """`editcap -E 0.02` outputs (Wireshark's tools/fuzz-test.sh mutation), if editcap exists."""
    editcap = shutil.which("editcap")
    if editcap is None:
        return []
    out: list[bytes] = []
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            for i in range(per_file):
                dst = Path(tmp) / f"{f.stem}-{i}.pcapng"
                res = subprocess.run(
                    [editcap, "-E", "0.02", "-s", "4096", str(f), str(dst)],
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
                if res.returncode == 0 and dst.exists():
                    out.append(dst.read_bytes()[: MAX_LEN["reader"]])
    return out


def _packets(files: list[Path], limit: int) -> list[bytes]:
    """TCP payloads of the captures (HTTP heads, WebSocket frames), first `limit` of them."""
    from analyzer.run import file_segments

    out: list[bytes] = []
    for f in files:
        summary = InputSummary(str(f))
        try:
            for seg in file_segments(str(f), summary, Limits()):
                if seg.payload:
                    out.append(seg.payload[:4096])
                    if len(out) >= limit:
                        return out
        except CaptureError:
            continue
    return out


def seeds(target: str, editcap_per_file: int = 2) -> list[bytes]:
    """A seed corpus for `target`, built from the public captures (small files whole, big ones
    cut), the project's own captures and, for the reader, `editcap -E` mutants of them."""
    files = _capture_files()
    if target == "pipeline":
        small = [f for f in files if f.suffix == ".pcap" and f.stat().st_size <= MAX_LEN["pipeline"]]
        return [f.read_bytes() for f in small]
    if target == "reader":
        out = []
        for f in files:
            raw = f.read_bytes()
            if f.suffix == ".gz":
                raw = gzip.decompress(raw)[: MAX_LEN["reader"] // 2]
                out.append(gzip.compress(raw))
            out.append(raw[: MAX_LEN["reader"]])
        small = [f for f in files if f.stat().st_size <= 64 * 1024 and f.suffix != ".gz"]
        return out + _editcap_variants(small, editcap_per_file)
    if target == "reassembler":
        rnd = random.Random(1)
        return [rnd.randbytes(rnd.randrange(16, 512)) for _ in range(64)]
    payloads = _packets(
        [f for f in files if "websocket" in f.name or "xiaozhi" in f.name or "http" in f.name], 400
    )
    if target == "http":
        heads = [p for p in payloads if http1.looks_like_request(p) or http1.looks_like_response(p)]
        return [bytes([i % 16]) + h for i, h in enumerate(heads)]
    if target == "frames":
        frames_ = [p for p in payloads if not (http1.looks_like_request(p) or http1.looks_like_response(p))]
        return [bytes([i % 256]) + p for i, p in enumerate(frames_[:200])]
    raise KeyError(target)
