"""The fast path (`analyzer.fastpath`) gives exactly what the slow path gives.

Every capture we have is read twice, with `harvest_file(fast=False)` (every packet a `Segment`
through `ConnectionTable.feed`) and `fast=True` (bulk packets consumed as raw bytes): the whole
`Harvest` (every handshake with its tcp.stream, transport facts, frames and anomalies, the OTA
exchanges, connection counts) and the `InputSummary` must be equal, and so must the diagnoses.
A seeded ~2 MB generated corpus (benchmarks/make_corpus.py) is also checked against its
ground truth. No timing here: benchmarks/bench.py measures speed.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from analyzer.config import Config
from analyzer.limits import DEFAULT_LIMITS, Limits
from analyzer.model import InputSummary
from analyzer.pipeline import Harvest, select_handshakes
from analyzer.run import harvest_file, report_from

ROOT = Path(__file__).resolve().parent.parent
PUBLIC = ROOT / "tests" / "data" / "public"
PUBLIC_FILES = sorted(
    str(p.relative_to(PUBLIC))
    for p in PUBLIC.rglob("*")
    if p.is_file() and p.suffix not in (".md", ".tsv", ".txt", ".keylog")
)
RECORDED = sorted(p.name for p in (ROOT / "captures").glob("*.pcap*"))


def both(path: str, limits: Limits = DEFAULT_LIMITS) -> tuple[tuple[InputSummary, Harvest], ...]:
    out = []
    for fast in (False, True):
        summary = InputSummary(path)
        out.append((summary, harvest_file(path, summary, limits, fast=fast)))
    return tuple(out)


def assert_same(path: str, limits: Limits = DEFAULT_LIMITS) -> Harvest:
    (s_slow, h_slow), (s_fast, h_fast) = both(path, limits)
    assert repr(s_fast) == repr(s_slow)
    assert repr(h_fast) == repr(h_slow)
    slow = report_from(s_slow, h_slow, Config())
    fast = report_from(s_fast, h_fast, Config())
    assert repr(fast.diagnoses) == repr(slow.diagnoses)
    assert repr(fast.otas) == repr(slow.otas)
    return h_fast


@pytest.mark.parametrize("rel", PUBLIC_FILES)
def test_public_capture_same_on_both_paths(rel: str) -> None:
    assert_same(str(PUBLIC / rel))


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_capture_same_on_both_paths(name: str) -> None:
    assert_same(str(ROOT / "captures" / name))


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_corpus", ROOT / "benchmarks" / "make_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module", params=["pcap", "pcapng"])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / f"c2.{request.param}"
    gen = _generator()
    stderr = sys.stderr
    try:
        gen.main(["--size-mb", "2", "--format", request.param, "--seed", "7", "--out", str(out)])
    finally:
        sys.stderr = stderr
    return out


def test_generated_corpus_same_on_both_paths_and_matches_truth(corpus: Path) -> None:
    h = assert_same(str(corpus))
    truth = json.loads(Path(str(corpus) + ".truth.json").read_text())
    expected = sorted((t["client"], t["server"], t["status"]) for t in truth["handshake_list"])
    got = sorted(
        (str(x.client), str(x.server), x.response.status if x.response else None)
        for x in select_handshakes(h, None)
        if x.request is not None and x.request.target.startswith("/xiaozhi/v1/")
    )
    assert got == expected


def test_generated_corpus_same_with_a_tiny_flow_table(corpus: Path) -> None:
    """Evictions and idle expiry (LRU order) happen at the same packets on both paths."""
    assert_same(str(corpus), Limits(max_flows=16, idle_timeout_s=2.0, syn_timeout_s=1.0))


def test_tls_downloads_leave_the_slow_path_after_their_first_encrypted_record(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server's TLS direction holds nothing the rules use once application data starts
    (`tls.records.APP_RECORDS_READ`): its bulk must bypass segment building, or a capture of
    HTTPS downloads costs the slow path for every packet of their first records."""
    from analyzer.pipeline import ConnectionTable

    slow: dict[tuple[str, int], int] = {}
    feed = ConnectionTable.feed

    def counting(self: ConnectionTable, seg):  # type: ignore[no-untyped-def]
        if seg.src.port == 443 and seg.payload:
            key = (seg.dst.ip, seg.dst.port)
            slow[key] = slow.get(key, 0) + 1
        return feed(self, seg)

    monkeypatch.setattr(ConnectionTable, "feed", counting)
    harvest_file(str(corpus), InputSummary(str(corpus)), DEFAULT_LIMITS)
    assert len(slow) >= 3  # the corpus has TLS downloads at all
    # one 16 KiB record spans 12 segments of 1448 bytes; reading up to 4 records took ~45
    assert max(slow.values()) <= 14, slow


def test_websocket_sessions_captured_midway_leave_the_slow_path(
    corpus: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The corpus's port-8000 audio sessions began before the capture: their directions are
    searched for an HTTP head only until two segments read as whole WebSocket frames
    (`handshake.MIDSTREAM_FRAME_RUNS`), not for the whole 64-piece budget."""
    from analyzer.pipeline import ConnectionTable

    slow: dict[tuple[str, int], int] = {}
    syn: set[tuple[str, int]] = set()
    feed = ConnectionTable.feed

    def counting(self: ConnectionTable, seg):  # type: ignore[no-untyped-def]
        client = seg.src if seg.dst.port == 8000 else seg.dst
        key = (client.ip, client.port)
        if seg.flags & 0x02:
            syn.add(key)
        elif seg.payload and 8000 in (seg.src.port, seg.dst.port) and key not in syn:
            slow[key] = slow.get(key, 0) + 1
        return feed(self, seg)

    monkeypatch.setattr(ConnectionTable, "feed", counting)
    harvest_file(str(corpus), InputSummary(str(corpus)), DEFAULT_LIMITS)
    assert len(slow) >= 2  # the corpus has mid-session flows at all
    # both directions: the first piece classifies, two frame runs end the search (+ slack for
    # pieces that were not whole frames); the old 64-piece search took ~130
    assert max(slow.values()) <= 12, slow
