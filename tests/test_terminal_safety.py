"""Terminal safety (reliability.md §3.3, goal G7): captured bytes cannot paint the terminal.

A capture whose header values hold every byte 0x00-0xFF, whose body, reason phrase, target and
WebSocket frames hold C1 controls, bidi overrides and rich markup, is run through every output.
Text: no raw control byte (other than rich's own colour codes with --color always), no C1 or
bidi code point, markup printed literally. JSON: valid UTF-8, parses, every value round-trips,
and no raw C1 / bidi / DEL character either (a JSON report is often read with `cat`).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from tests.pcapwrite import pcap_bytes
from tests.segments import Wire

ROOT = Path(__file__).parent.parent

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
C1 = "".join(chr(c) for c in range(0x80, 0xA0))
MARKUP = "[bold red]owned[/bold red] [link=file:///etc/passwd]click[/link] :skull: [blink]x"
OSC_TITLE = "\x1b]0;pwned\x07\x1b[2J\x1b[31m"
UNICODE = f"{OSC_TITLE}{BIDI}{C1}{MARKUP}\u2028\u00a0\ufeff\U000e0041 认证失败"

# Every byte except CR and LF (which end the line; bare CR is its own header below).
ALL_BYTES = [bytes(b for b in range(lo, lo + 32) if b not in (0x0A, 0x0D)) for lo in range(0, 256, 32)]
HEADERS = [(f"X-Bytes-{i:02x}", chunk) for i, chunk in enumerate(ALL_BYTES)] + [
    ("X-Bare-Cr", b"a\rb"),
    ("X-Utf8", UNICODE.encode("utf-8")),
    ("X-Markup", MARKUP.encode()),
]


def frame(opcode: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    n = len(payload)
    head = bytes([0x80 | opcode]) + (bytes([0x80 | n]) if n < 126 else b"\xfe" + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def build() -> bytes:
    target = f"/xiaozhi/v1/{MARKUP}{BIDI}".encode().replace(b" ", b"%20")
    head = b"GET " + target + b" HTTP/1.1\r\nHost: 192.168.1.10:8000\r\n"
    head += b"".join(n.encode() + b": " + v + b"\r\n" for n, v in HEADERS)
    head += b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    head += b"Sec-WebSocket-Version: 13\r\n\r\n"
    answer = (
        b"HTTP/1.1 101 " + OSC_TITLE.encode() + MARKUP.encode() + b"\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nServer: " + bytes(range(0x80, 0xA0)) + b"\r\n\r\n"
    )
    server_frames = bytes([0x81, 126]) + len(UNICODE.encode()).to_bytes(2, "big") + UNICODE.encode()
    close = b"\x88" + bytes([2 + len("bye\u202e\x9b".encode())]) + b"\x03\xe8" + "bye\u202e\x9b".encode()
    a = (
        Wire()
        .handshake()
        .send(True, head, sizes=[1400] * (len(head) // 1400 + 1))
        .send(False, answer + server_frames + close)
        .send(True, frame(1, UNICODE.encode()) + frame(2, bytes(range(256))))
        .fin(True)
        .fin(False)
    )
    refused = (
        b"HTTP/1.1 403 " + MARKUP.encode() + b"\x9b\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n"
    )
    body = ("<h1>" + UNICODE + "</h1>").encode()
    b = Wire(cisn=7000).handshake().send(True, head, sizes=[1400] * (len(head) // 1400 + 1))
    b.send(False, refused % len(body) + body).fin(True).fin(False)
    segs = a.segments + [
        replace(
            s,
            frame=s.frame + 100,
            ts_ns=s.ts_ns + 10**9,
            src=replace(s.src, port=s.src.port + 1) if s.src.port != 8000 else s.src,
            dst=replace(s.dst, port=s.dst.port + 1) if s.dst.port != 8000 else s.dst,
        )
        for s in b.segments
    ]
    return pcap_bytes(segs)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tty") / "hostile-text.pcap"
    path.write_bytes(build())
    return path


def run(capture: Path, *args: str) -> bytes:
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(capture), *args],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert b"Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout + proc.stderr


SGR = re.compile(rb"\x1b\[[0-9;]*m")  # rich's own colours (--color always) are the only escapes
CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f]")
BAD_CODEPOINTS = re.compile(f"[{re.escape(C1 + BIDI)}\u2028\u2029\ufeff\U000e0000-\U000e007f]")


@pytest.mark.parametrize(
    "args", [(), ("-v",), ("-v", "--color", "never"), ("-v", "--color", "always")], ids=" ".join
)
def test_text_output_holds_no_terminal_control(capture: Path, args: tuple[str, ...]) -> None:
    out = run(capture, *args)
    plain = SGR.sub(b"", out) if "always" in args else out
    if "always" not in args:
        assert b"\x1b" not in out
    assert CONTROL_BYTES.findall(plain) == []
    text = plain.decode("utf-8")  # and it is valid UTF-8
    assert BAD_CODEPOINTS.findall(text) == []
    # markup is shown, not interpreted; escapes are visible
    assert "[bold red]owned[/bold red]" in text and "[link=file:///etc/passwd]" in text
    assert "\\x1b]0;pwned\\x07" in text and "\\u202e" in text
    if "-v" in args:
        assert "X-Bytes-00: \\x00\\x01" in text


def _strings(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return []


@pytest.mark.parametrize("fmt", ["json", "jsonl"])
def test_json_is_valid_utf8_and_round_trips(capture: Path, fmt: str) -> None:
    out = run(capture, "-f", fmt)
    text = out.decode("utf-8")
    docs = [json.loads(text)] if fmt == "json" else [json.loads(line) for line in text.splitlines()]
    hss = docs[0]["handshakes"] if fmt == "json" else docs
    assert len(hss) == 2
    for h in hss:
        headers = dict((n, v) for n, v in h["request"]["headers"])
        for name, value in HEADERS:
            assert headers[name] == value.decode("latin-1").strip(" \t"), name  # every byte kept (but OWS)
        assert h["request"]["target"].startswith("/xiaozhi/v1/[bold%20red]")
    upgraded = next(h for h in hss if h["outcome"] == "upgraded")
    texts = [f.get("text") for f in upgraded["frames"]]
    assert UNICODE in texts
    assert any(f.get("close_reason") == "bye\u202e\x9b" for f in upgraded["frames"])
    refused = next(h for h in hss if h["outcome"] != "upgraded")
    assert refused["response"]["body"] == "<h1>" + UNICODE + "</h1>"
    # and nothing in the raw JSON text can act on a terminal either
    assert CONTROL_BYTES.findall(out.replace(b"\n", b"")) == []
    assert BAD_CODEPOINTS.findall(text) == []
    assert all(isinstance(s, str) for d in docs for s in _strings(d))
