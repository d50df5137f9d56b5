"""Good handshakes from real software must not be blamed: no error-level finding on any 101.

Every 101 in the 73 public captures (browsers, Zeek, Suricata, Jupyter, wstunnel, NDN…) and
every good loopback recording is a handshake that worked. The one exception is pinned on purpose:
zeek/wrong-accept-header.pcap, whose 101 carries a deliberately wrong Sec-WebSocket-Accept.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer.model import Outcome, Severity
from analyzer.run import analyze_path

ROOT = Path(__file__).parent.parent
PUBLIC = ROOT / "tests" / "data" / "public"
CAPTURES = sorted(
    [p for p in PUBLIC.rglob("*") if p.suffix in (".pcap", ".pcapng", ".gz")]
    + [
        ROOT / "captures" / n
        for n in (
            "xiaozhi-good-handshake.pcap",
            "xiaozhi-good-handshake-ipv6.pcap",
            "xiaozhi-split-request-good.pcap",
            "nginx-upgrade-good.pcap",
            "starlette-good-ws.pcap",
            "ota-then-ws-good.pcap",
        )
    ]
)
EXPECTED_ERRORS = {("wrong-accept-header.pcap", "bad-websocket-accept")}


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: str(p.relative_to(ROOT)))
def test_upgraded_handshakes_carry_no_error(path: Path) -> None:
    report = analyze_path(str(path))
    for d in report.diagnoses:
        if d.handshake.outcome is not Outcome.UPGRADED:
            continue
        errors = {(path.name, f.name) for f in d.findings if f.severity is Severity.ERROR}
        assert errors <= EXPECTED_ERRORS, [f.message for f in d.findings if f.severity is Severity.ERROR]
        if not errors:
            assert d.cause is None


def test_the_wrong_accept_capture_is_blamed() -> None:
    report = analyze_path(str(PUBLIC / "zeek" / "wrong-accept-header.pcap"))
    [d] = report.diagnoses
    assert d.cause is not None and d.cause.name == "bad-websocket-accept"
