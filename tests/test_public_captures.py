"""Handshake extraction on 73 real captures written by other projects, checked against tshark.

`tests/data/public/captures-expected.tsv` lists every HTTP upgrade request tshark 4.0.17 finds in
them (see MANIFEST.md there for sources, licences and how it was made). wsdiag must find exactly
those requests: same TCP stream numbers, URIs, Host, Sec-WebSocket-Key and answer status —
including the 101 with a wrong Sec-WebSocket-Accept and the request that was never answered.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from analyzer.limits import DEFAULT_LIMITS
from analyzer.model import InputSummary, Outcome
from analyzer.pipeline import Harvest, select_handshakes
from analyzer.run import harvest_file

DATA = Path(__file__).parent / "data" / "public"
ROWS = list(csv.DictReader((DATA / "captures-expected.tsv").open(encoding="utf-8"), delimiter="\t"))
TSV_FILES = sorted({r["file"] for r in ROWS})
ALL_FILES = sorted(
    str(p.relative_to(DATA))
    for p in DATA.rglob("*")
    if p.is_file() and p.suffix not in (".md", ".tsv", ".txt", ".keylog")
)
# Files a careful reader must refuse or stop in (MANIFEST.md: "Malformed? YES - file-level").
FATAL = {
    "libpcap/linktype-reserved-field-not-zero.pcap",
    "libpcap/pcap-invalid-version-1.pcap",
    "libpcap/pcapng-invalid-vers-1.pcapng",
    "libpcap/shb-option-too-long.pcapng",
}
DAMAGED = {
    "suricata-verify/bug-6875-01-fuzz.pcap": "capture-damaged",
    "ndpi/fuzz-2021-10-13.pcap": "capture-truncated",
    "pcap2har-andrewf/out-of-order.pcap": "capture-truncated",
}


def harvest(rel: str) -> tuple[InputSummary, Harvest]:
    summary = InputSummary(rel)
    return summary, harvest_file(str(DATA / rel), summary, DEFAULT_LIMITS)


@pytest.mark.parametrize("rel", TSV_FILES)
def test_finds_exactly_the_upgrade_requests_tshark_finds(rel: str) -> None:
    summary, h = harvest(rel)
    got = sorted(
        (
            x.tcp_stream,
            x.request.target,
            x.request.header("host") or "",
            x.request.header("sec-websocket-key") or "",
            str(x.response.status) if x.response else "none",
        )
        for x in select_handshakes(h, None)
        if x.request is not None
    )
    expected = sorted(
        (int(r["tcp_stream"]), r["uri"], r["host"], r["sec_websocket_key"], r["response_status"])
        for r in ROWS
        if r["file"] == rel
    )
    assert got == expected
    assert summary.readable_to_end and summary.error is None


@pytest.mark.parametrize("rel", ALL_FILES)
def test_every_public_capture_reads_or_fails_by_name(rel: str) -> None:
    """No traceback on any of them; malformed files end with their named anomaly or error."""
    summary, h = harvest(rel)
    if rel in FATAL:
        assert summary.error and not summary.readable_to_end and summary.packets == 0
    elif rel in DAMAGED:
        assert not summary.readable_to_end
        assert DAMAGED[rel] in {a.name for a in summary.anomalies}
    else:
        assert summary.error is None and summary.readable_to_end, summary.anomalies
    if rel not in TSV_FILES:  # no upgrade request tshark did not see either
        assert [x for x in select_handshakes(h, None) if x.request is not None] == []


def test_wrong_accept_and_unanswered_request_are_reconstructed() -> None:
    _, h = harvest("zeek/wrong-accept-header.pcap")
    [hs] = select_handshakes(h, None)
    assert (
        hs.response is not None
        and hs.response.header("sec-websocket-accept") == "N8ntNYkX6Qerw4tK3s/CYzpSZNc=-wrong"
    )
    _, h = harvest("suricata-verify/http-request-header-multi-input.pcap")
    [hs] = select_handshakes(h, None)
    assert hs.response is None and hs.outcome in (Outcome.NO_RESPONSE, Outcome.RESET)
    assert hs.request is not None
    assert [n for n, _ in hs.request.headers if n in ("Key", "UUID")] == ["Key", "UUID"]


def test_headers_kept_in_wire_order_and_casing() -> None:
    """zeek/fragmented-http-reply.pcap answers with all-lowercase header names: kept as sent."""
    _, h = harvest("zeek/fragmented-http-reply.pcap")
    [hs] = select_handshakes(h, None)
    assert hs.response is not None
    assert all(n == n.lower() for n, _ in hs.response.headers)
    assert hs.request is not None and hs.request.headers[0][0] == "Host"


def test_compressed_frames_are_inflated() -> None:
    _, h = harvest("suricata-verify/websocket-compressed-example_websocket.pcap")
    [hs] = select_handshakes(h, None)
    texts = [f.text for f in hs.frames if f.text]
    assert texts and any(f.inflated for f in hs.frames)
    assert all("\ufffd" not in t for t in texts)


def test_orphan_101_without_its_request_is_reported() -> None:
    """A 101 whose request was before the capture began still shows up (request null)."""
    _, h = harvest("pcapplusplus/650HttpResponses.pcap")
    [hs] = select_handshakes(h, None)
    assert hs.request is None and hs.response is not None and hs.response.status == 101
    assert hs.tcp_stream == 207
