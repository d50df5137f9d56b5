"""`--engine tshark`: Wireshark's dissection builds the same Report model, and its absence is one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.crosscheck import analyze
from analyzer.model import Outcome
from analyzer.sources import tshark

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = ROOT / "captures"
needs_tshark = pytest.mark.skipif(tshark.tshark_path() is None, reason="tshark not installed")


@needs_tshark
@pytest.mark.parametrize(
    ("capture", "status", "cause"),
    [
        ("nginx-deny-403.pcap", 403, "proxy-rejected"),
        ("xiaozhi-good-handshake.pcap", 101, None),
        ("tls-clienthello-to-plain-ws-port.pcap", None, "tls-to-plain-port"),
    ],
)
def test_same_verdicts_as_our_engine(capture: str, status: int | None, cause: str | None) -> None:
    ours = analyze(str(CAPTURES / capture))
    theirs = analyze(str(CAPTURES / capture), engine="tshark")
    assert theirs.engine == "tshark"
    for r in (ours, theirs):
        d = r.diagnoses[0]
        assert (d.handshake.response.status if d.handshake.response else None) == status
        assert (d.cause.name if d.cause else None) == cause


@needs_tshark
def test_websocket_frames_and_tls_facts() -> None:
    r = analyze(str(CAPTURES / "xiaozhi-good-handshake.pcap"), engine="tshark")
    hs = r.diagnoses[0].handshake
    assert hs.outcome is Outcome.UPGRADED
    assert any(f.text and '"hello"' in f.text for f in hs.frames if f.direction == "server")
    r = analyze(str(CAPTURES / "tls" / "tls-untrusted-ca-tls12.pcap"), engine="tshark")
    t = r.diagnoses[0].handshake.transport
    assert t.tls is not None and t.tls.sni == "localhost" and len(t.tls.certificates) == 2
    assert r.diagnoses[0].cause is not None and r.diagnoses[0].cause.name == "untrusted-certificate"


@needs_tshark
def test_decrypts_with_a_key_log_too() -> None:
    tls = CAPTURES / "tls"
    r = analyze(
        str(tls / "tls-nginx-403-keylog.pcap"),
        engine="tshark",
        keylog=str(tls / "tls-nginx-403-keylog.keylog"),
    )
    d = r.diagnoses[0]
    assert d.handshake.response is not None and d.handshake.response.status == 403
    assert d.cause is not None and d.cause.name == "proxy-rejected"


def test_missing_tshark_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from analyzer.cli import app

    monkeypatch.setattr(tshark, "tshark_path", lambda: None)
    res = CliRunner().invoke(app, ["analyze", str(CAPTURES / "nginx-deny-403.pcap"), "--engine", "tshark"])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "apt install tshark" in lines[0] and "brew install wireshark" in lines[0]
    # everything that does not need tshark still works
    res = CliRunner().invoke(app, ["analyze", str(CAPTURES / "nginx-deny-403.pcap"), "-f", "json"])
    assert res.exit_code == 1 and "proxy-rejected" in res.output


def test_missing_tshark_with_keylog_still_reports_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    from analyzer.tls import decrypt

    def missing(*a: object, **k: object) -> object:
        raise tshark.TsharkMissing(tshark.INSTALL_HINT)

    monkeypatch.setattr(decrypt, "decrypted_streams", missing)
    tls = CAPTURES / "tls"
    r = analyze(str(tls / "tls-nginx-403-keylog.pcap"), keylog=str(tls / "tls-nginx-403-keylog.keylog"))
    assert "tls-not-decrypted" in {a.name for a in r.input.anomalies}
    assert r.tls_sessions == 1


@needs_tshark
def test_cli_engine_option() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(CAPTURES / "nginx-deny-403.pcap"),
         "--engine", "tshark", "-f", "json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1 and '"engine": "tshark"' in proc.stdout
