"""End to end: the first cause for every row of captures/expected.tsv (real loopback captures).

Handshake rows are matched by tcp_stream against `Report.diagnoses`; OTA rows (POST …/ota) against
`Report.otas` (the OTA diagnoses). The captures' tokens are signed with the key the recorder documents in
captures/README.md, which is passed as --auth-key would be.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from analyzer.config import Config
from analyzer.run import analyze_path

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
EXPECTED = CAPTURES / "expected.tsv"
CONFIG = Config(auth_key="wsdiag-test-key")  # captures/README.md: how the tokens were signed


def rows() -> list[dict[str, str]]:
    with EXPECTED.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@cache
def report(name: str) -> Any:
    return analyze_path(str(CAPTURES / name), CONFIG)


def causes(row: dict[str, str]) -> list[str]:
    rep = report(row["file"])
    stream = int(row["tcp_stream"])
    if row["method"] == "POST" and "/ota" in row["target"]:
        found = [od for od in rep.otas if od.exchange.tcp_stream == stream]
    else:
        found = [d for d in rep.diagnoses if d.handshake.tcp_stream == stream]
    return [d.cause.name if d.cause is not None else "none" for d in found]


@pytest.mark.parametrize("row", rows(), ids=lambda r: f"{r['file']}#{r['tcp_stream']}")
def test_first_cause_matches_expected(row: dict[str, str]) -> None:
    """The verdict for each recorded stream is the expected cause name (or none)."""
    got = causes(row)
    expected = row["expected_cause"]
    if expected == "none":
        assert got in ([], ["none"]), got  # a good TLS session or OTA may yield no diagnosis at all
    else:
        assert got == [expected]


@pytest.mark.parametrize(
    ("name", "warning"),
    [
        ("netns-device-id-not-link-mac.pcap", "device-id-mismatch"),
        ("xiaozhi-non-uuid-client-id-good.pcap", "malformed-client-id"),
    ],
)
def test_good_handshakes_with_a_warning(name: str, warning: str) -> None:
    """Upgraded and accepted, so no cause; the risk is still named as a warning."""
    [d] = report(name).diagnoses
    assert d.cause is None
    assert warning in [f.name for f in d.findings if f.severity == "warning"]


def test_bare_starlette_403_is_told_apart_by_the_expected_path() -> None:
    """uvicorn's bare 403 is the same bytes for a missing route and for an app that closed before
    accept(): without `--expect-path` the likelier (the route) is named with both readings; when
    the path is the expected one, the app's own check is."""
    path = str(CAPTURES / "starlette-close-before-accept-403.pcap")
    [plain] = analyze_path(path, CONFIG).diagnoses
    assert plain.cause is not None and plain.cause.name == "wrong-path" and "accept()" in plain.cause.message
    [told] = analyze_path(path, Config(auth_key=CONFIG.auth_key, expect_path="/ws-closed")).diagnoses
    assert told.cause is not None and told.cause.name == "proxy-rejected"
    assert "on the expected path" in told.cause.message
