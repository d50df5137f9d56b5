"""The canary test (reliability.md §3.1, goal G6): a distinct token planted in every place a
secret can hide, every output format run over the capture, every output grepped for every
canary in every encoding it could take. Redacted by default: 0 hits. `--show-secrets`: all there.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer import redact
from analyzer.model import Endpoint, Segment
from tests.pcapwrite import ANSWER_101, pcap_bytes
from tests.segments import Wire

ROOT = Path(__file__).parent.parent


def canary(n: int, extra: str = "") -> str:
    """A token no rule or text could produce by chance; `extra` adds characters that change
    under percent- or base64-encoding."""
    return f"Cnry{n:02d}q7Zx{extra}W{n * 7919:06d}k"


_CLAIMS = base64.urlsafe_b64encode(b'{"sub":"' + canary(10).encode() + b'"}').decode().rstrip("=")
JWT = "eyJhbGciOiJIUzI1NiJ9." + _CLAIMS + ".Cnry10sigPz4v8Q3mP0aL"
JWT_HEADER = "eyJhbGciOiJFUzI1NiJ9." + _CLAIMS[::-1] + ".Cnry11sigZx9v8Q3mP0aL"
XIAOZHI_SIG = ("Cnry12" + "Zq9Lm3Np7Rt1Vx5Bz8Dc2Fg6Hj4Kk0Ls9Mu3Nw7Py1").ljust(43, "A")[:43]

CANARIES: dict[str, str] = {
    "authorization-bearer": canary(1, "-._~"),
    "authorization-basic-password": canary(2, "/+"),
    "proxy-authorization": canary(3),
    "cookie-session": canary(4),
    "cookie-other": canary(5, "/=="),
    "query-token": canary(6, "/+="),
    "query-access_token": canary(7),
    "query-authorization-bearer": canary(8, "+/"),
    "subprotocol-k8s": canary(9),
    "jwt-in-path": JWT,
    "jwt-in-header": JWT_HEADER,
    "xiaozhi-hmac": XIAOZHI_SIG,
    "ota-websocket-token": canary(13),
    "ota-mqtt-password": canary(14),
    "frame-token": canary(15),
    "malformed-request-bearer": canary(16),
    "subprotocol-bearer-pair": canary(17),
    "x-api-key": canary(18),
    "folded-authorization": canary(19),
}
BASIC = base64.b64encode(f"admin:{CANARIES['authorization-basic-password']}".encode()).decode()


def forms(secret: str) -> set[str]:
    """Every spelling of `secret` an output could contain: raw, percent-encoded (both kinds),
    base64 (standard and URL-safe, padded or not), and its middle, so a partial mask is caught."""
    b64 = base64.b64encode(secret.encode()).decode()
    b64u = base64.urlsafe_b64encode(secret.encode()).decode()
    out = {secret, quote(secret, safe=""), quote_plus(secret), b64, b64.rstrip("="), b64u, b64u.rstrip("=")}
    out |= {f.lower() for f in out} | {f.upper() for f in out}  # a rule may quote a value re-cased
    if len(secret) > 16:
        out.add(secret[len(secret) // 2 - 6 : len(secret) // 2 + 6])
    return out


def frame(opcode: int, payload: bytes, mask: bytes = b"\x11\x22\x33\x44") -> bytes:
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked


def build_capture() -> bytes:
    c = CANARIES
    ota = (
        b"POST /xiaozhi/ota/ HTTP/1.1\r\nHost: 192.168.1.10:8002\r\nDevice-Id: a0:b7:65:12:34:56\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    ota_body = json.dumps(
        {
            "websocket": {"url": "ws://192.168.1.10:8000/xiaozhi/v1/", "token": c["ota-websocket-token"]},
            "mqtt": {"endpoint": "mqtt.example:8883", "password": c["ota-mqtt-password"]},
        }
    ).encode()
    ota_answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(ota_body),
        ota_body,
    )
    query = (
        f"token={quote(c['query-token'], safe='')}&access_token={c['query-access_token']}"
        f"&authorization=Bearer+{quote(c['query-authorization-bearer'], safe='')}"
    )
    upgrade = (
        f"GET /xiaozhi/v1/{JWT}?{query} HTTP/1.1\r\n"
        "Host: 192.168.1.10:8000\r\n"
        f"Authorization: Bearer {c['xiaozhi-hmac']}.1795640642\r\n"
        f"Proxy-Authorization: Bearer {c['proxy-authorization']}\r\n"
        f"Cookie: session={c['cookie-session']}; theme=dark; other={c['cookie-other']}\r\n"
        f"Sec-WebSocket-Protocol: base64url.bearer.authorization.k8s.io.{c['subprotocol-k8s']}, v1\r\n"
        f"X-Trace: {c['jwt-in-header']}\r\n"
        f"X-Api-Key: {c['x-api-key']}\r\n"
        "Device-Id: a0:b7:65:12:34:56\r\nClient-Id: 3f2b8c1e-9a7d-4e21-b0c4-5d6e7f809a1b\r\n"
        "Protocol-Version: 1\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    hello = json.dumps({"type": "hello", "version": 1, "token": c["frame-token"]}).encode()
    second = (
        "GET /ws HTTP/1.1\r\nHost: 192.168.1.10:8000\r\n"
        f"Authorization: Bearer {c['authorization-bearer']}\r\n"
        f"Sec-WebSocket-Protocol: Bearer, {c['subprotocol-bearer-pair']}\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    malformed = (
        b"get /xiaozhi/v1/ HTTP/1.1 junk\n"
        b"Host : 192.168.1.10\n"
        b"Authorization: Bearer " + c["malformed-request-bearer"].encode() + b"\x00\n"
        b"X-Folded-Auth: x\n"
        b"Upgrade: websocket\nConnection: Upgrade\n\n"
    )
    basic = (
        b"GET /xiaozhi/v1/ HTTP/1.1\r\nHost: 192.168.1.10:8000\r\n"
        b"Authorization: Basic " + BASIC.encode() + b"\r\n"
        b"Proxy-Authorization: Bearer\r\n " + c["folded-authorization"].encode() + b"\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    refused = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    segs: list[Segment] = []
    wires = [
        Wire(Endpoint("192.168.1.50", 40001), Endpoint("192.168.1.10", 8002))
        .handshake()
        .send(True, ota)
        .send(False, ota_answer)
        .fin(True)
        .fin(False),
        Wire(Endpoint("192.168.1.50", 40002))
        .handshake()
        .send(True, upgrade)
        .send(False, ANSWER_101)
        .send(True, frame(1, hello))
        .send(False, b"\x81\x0bauth failed")
        .fin(True)
        .fin(False),
        Wire(Endpoint("192.168.1.50", 40003))
        .handshake()
        .send(True, second)
        .send(False, refused)
        .fin(True)
        .fin(False),
        Wire(Endpoint("192.168.1.50", 40004))
        .handshake()
        .send(True, malformed)
        .send(False, refused)
        .fin(True)
        .fin(False),
        Wire(Endpoint("192.168.1.50", 40005))
        .handshake()
        .send(True, basic)
        .send(False, refused)
        .fin(True)
        .fin(False),
    ]
    t = 0
    for w in wires:
        for s in w.segments:
            t += 1_000_000
            segs.append(replace(s, frame=len(segs) + 1, ts_ns=1_735_689_600_000_000_000 + t))
    return pcap_bytes(segs)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("canary") / "canaries.pcap"
    path.write_bytes(build_capture())
    return path


def wsdiag(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", *args], cwd=ROOT, capture_output=True, timeout=60, check=False
    )
    assert b"Traceback" not in proc.stderr
    assert proc.returncode in (0, 1), proc.stderr
    return proc.stdout.decode("utf-8") + proc.stderr.decode("utf-8")


OUTPUTS = [
    ("text",),
    ("text", "-v"),
    ("text", "-v", "--color", "always"),
    ("json",),
    ("jsonl",),
]


def _outputs(capture: Path, *extra: str) -> dict[str, str]:
    return {" ".join(o): wsdiag("analyze", str(capture), "-f", o[0], *o[1:], *extra) for o in OUTPUTS}


@pytest.fixture(scope="module")
def redacted(capture: Path) -> dict[str, str]:
    outs = _outputs(capture)
    outs["explain"] = "".join(wsdiag("explain", name) for name in ("missing-token", "token-rejected"))
    return outs


@pytest.fixture(scope="module")
def shown(capture: Path) -> dict[str, str]:
    return _outputs(capture, "--show-secrets")


def test_the_capture_holds_every_canary(capture: Path) -> None:
    raw = capture.read_bytes()
    for where, secret in CANARIES.items():
        if where == "authorization-basic-password":
            assert BASIC.encode() in raw
        elif where != "frame-token":  # masked on the wire like every client frame
            assert any(f.encode() in raw for f in forms(secret)), where


def test_every_canary_is_seen_by_the_analyzer(shown: dict[str, str]) -> None:
    """Without this, a canary the parser never reached would pass the redaction test."""
    doc = json.loads(shown["json"])
    assert len(doc["handshakes"]) == 4 and len(doc["ota"]) == 1
    missing = [
        w
        for w, s in CANARIES.items()
        if w != "authorization-basic-password" and not forms(s) & _found(shown["json"], s)
    ]
    assert missing == []
    assert BASIC in shown["json"]


def _found(text: str, secret: str) -> set[str]:
    return {f for f in forms(secret) if f in text}


@pytest.mark.parametrize("where", sorted(CANARIES))
def test_no_canary_in_any_output(where: str, redacted: dict[str, str]) -> None:
    secret = CANARIES[where]
    leaks = {fmt: sorted(_found(out, secret)) for fmt, out in redacted.items() if _found(out, secret)}
    if where == "authorization-basic-password":
        leaks |= {fmt: [BASIC] for fmt, out in redacted.items() if BASIC in out or BASIC.rstrip("=") in out}
    assert leaks == {}


def test_redacted_outputs_say_so(redacted: dict[str, str]) -> None:
    assert json.loads(redacted["json"])["secrets"] == "redacted"
    assert "redacted" in redacted["text"]


@pytest.mark.parametrize("fmt", [" ".join(o) for o in OUTPUTS])
def test_show_secrets_shows_them(fmt: str, shown: dict[str, str]) -> None:
    out = shown[fmt]
    if fmt.startswith("text") and "-v" not in fmt:
        return  # the short text report shows requests and answers, not every frame and body
    hidden = [
        w
        for w, s in CANARIES.items()
        if w not in ("authorization-basic-password",)
        and not _found(out, s)
        and not (fmt.startswith("text") and w.startswith("ota-"))  # text shows the OTA body cut
    ]
    assert hidden == []


def test_write_file_is_the_raw_capture_and_private(tmp_path: Path) -> None:
    """`wsdiag live --write` is the one output that holds secrets: the user asked for the raw
    capture. It is created 0600 (whatever the umask) at the path the user named, and holds the
    packets as captured (the canaries included), which is what makes it replayable."""
    from analyzer.sources.pcapng_writer import PcapngWriter

    path = tmp_path / "session.pcapng"
    raw = build_capture()
    writer = PcapngWriter(str(path), 1, "eth0")
    writer.write(raw[40:200], 1_735_689_600_000_000_000)
    writer.close()
    assert path.stat().st_mode & 0o777 == 0o600
    assert raw[40:200] in path.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.pcapng"]


# ---- the literal masker ------------------------------------------------------------------------

_ALPHABET = "aAbB.-_ ~xX"


@given(
    secrets=st.lists(st.text(alphabet=_ALPHABET, min_size=4, max_size=8), max_size=4),
    data=st.data(),
)
@settings(max_examples=400, deadline=None)
def test_ascii_masking_is_the_regex_masking(secrets: list[str], data: st.DataObject) -> None:
    """The plain-search masker for ASCII text gives what the case-insensitive alternation
    (longest first) gives, overlapping and differently cased secrets included."""
    import re

    from analyzer.redact import Redactor, mask

    secrets += [x[: data.draw(st.integers(4, len(x)))] for x in secrets[:2]]  # prefixes of each other
    # the text is made of the secrets (other letter cases too), parts of them and filler
    pieces = st.sampled_from([*secrets, *(x.swapcase() for x in secrets), *(x[:-1] for x in secrets)])
    filler = st.text(alphabet=_ALPHABET, max_size=3)
    text = "".join(data.draw(st.lists(pieces | filler, max_size=6))) if secrets else ""
    lits = sorted(set(secrets), key=len, reverse=True)
    expected = text
    if lits:
        pattern = re.compile("|".join(re.escape(s) for s in lits), re.IGNORECASE)
        expected = pattern.sub(lambda m: mask(m.group(0)), text)
    assert Redactor(secrets).apply(text) == expected


def test_non_ascii_text_is_masked_case_insensitively_too() -> None:
    from analyzer.redact import Redactor

    assert "sEcReT-42" not in Redactor(["secret-42"]).apply("é sEcReT-42 ß")


@given(
    parts=st.lists(
        st.sampled_from(
            ["eyJhbGciOi", ".", "Bearer ", "bAsIc ", "bearer%20", "bearer+", "A" * 43, "1700000000", "x", " "]
        )
        | st.text(alphabet="aZ9._- ", max_size=4),
        max_size=12,
    )
)
@settings(max_examples=500, deadline=None)
def test_shape_prefilter_never_skips_a_match(parts: list[str]) -> None:
    """`_may_hold_shape` only lets text skip the SHAPES regex when the regex would find nothing."""
    from analyzer.redact import SHAPES, _may_hold_shape

    text = "".join(parts)
    if SHAPES.search(text):
        assert _may_hold_shape(text)


def test_masking_many_occurrences_stays_linear() -> None:
    """One secret quoted thousands of times beside another that occurs once, at the end: each
    literal is searched for again only when a mask passed it (no rescans to the end per match)."""
    import time as _time

    from analyzer.redact import Redactor

    text = "tok-A " * 60_000 + "rare-secret-Z"
    started = _time.process_time()
    out = Redactor(["tok-A", "rare-secret-Z"]).apply(text)
    assert "tok-A" not in out and "rare-secret-Z" not in out and out.count("‹redacted:5›") == 60_000
    # ~0.1 s here; rescanning 360 KB for the rare one after each of 60,000 matches took ~5 s
    assert _time.process_time() - started < 1.5


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("missing bearer token", None),  # a server's words, not a credential
        ('WWW-Authenticate: Bearer realm="ws"', None),  # a challenge's parameters
        ("Bearer token-abc123xyz", "token-abc123xyz"),  # a credential that starts with a word
        ("Authorization: Bearer test-token", "test-token"),
    ],
)
def test_bearer_shape_masks_credentials_not_words(text: str, hidden: str | None) -> None:
    found = [m.group(0) for m in redact.SHAPES.finditer(text)]
    assert found == ([hidden] if hidden else [])
