"""TCP reassembly: any segmentation, order and duplication gives the same bytes; gaps are named."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.tcp import MOD, StreamReassembler

ISN = 1000


def reassemble(
    pieces: list[tuple[int, bytes]], isn: int = ISN, ack: int | None = None
) -> tuple[bytes, StreamReassembler]:
    r = StreamReassembler()
    r.syn(isn)
    out = bytearray()
    for i, (off, data) in enumerate(pieces):
        for p in r.feed((isn + 1 + off) % MOD, data, i, i + 1):
            assert not p.gap
            out += p.data
    return bytes(out), r


@st.composite
def segmented(draw: st.DrawFn) -> tuple[bytes, list[tuple[int, bytes]], int]:
    data = draw(st.binary(min_size=1, max_size=400))
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=12))))
    bounds = [0, *[c for c in cuts if c < len(data)], len(data)]
    segs = [(a, data[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
    dups = draw(st.lists(st.sampled_from(segs), max_size=5))
    # overlapping retransmissions: a window of the original bytes at any offset
    extra = []
    for _ in range(draw(st.integers(0, 3))):
        a = draw(st.integers(0, len(data) - 1))
        b = draw(st.integers(a + 1, len(data)))
        extra.append((a, data[a:b]))
    allsegs = draw(st.permutations(segs + dups + extra))
    isn = draw(st.sampled_from([0, 1000, MOD - 1, MOD - 37, MOD - 300]))
    return data, list(allsegs), isn


@settings(max_examples=300, deadline=None)
@given(segmented())
def test_any_segmentation_order_and_duplication_reassembles_exactly(
    case: tuple[bytes, list[tuple[int, bytes]], int],
) -> None:
    """Reordering, duplicates and overlapping retransmissions never change the bytes (also across 2**32)."""
    data, segs, isn = case
    out, r = reassemble(segs, isn)
    assert out == data
    assert "rexmit-inconsistency" not in r.anomalies


def test_conflicting_retransmission_keeps_first_copy_and_is_flagged() -> None:
    """A retransmission with different bytes is an anomaly; the first copy wins."""
    out, r = reassemble([(0, b"GET /a"), (0, b"GET /b"), (6, b" HTTP/1.1")])
    assert out == b"GET /a HTTP/1.1"
    assert "rexmit-inconsistency" in r.anomalies


def test_conflicting_overlap_in_out_of_order_buffer_keeps_first_copy() -> None:
    out, r = reassemble([(4, b"AAAA"), (4, b"BBBB"), (0, b"xxxx")])
    assert out == b"xxxxAAAA"
    assert "rexmit-inconsistency" in r.anomalies


def test_gap_is_reported_not_zero_filled_when_peer_acks_past_it() -> None:
    """A segment missing from the capture but acknowledged by the peer becomes a named gap."""
    r = StreamReassembler()
    r.syn(ISN)
    first = r.feed(ISN + 1, b"hello", 0, 1)
    held = r.feed(ISN + 1 + 10, b"world", 0, 3)
    assert [p.data for p in first] == [b"hello"] and held == []
    pieces = r.acked(ISN + 1 + 15)
    assert [(p.gap, p.data) for p in pieces] == [(5, b"world")]
    assert r.gaps == 1


def test_flush_delivers_buffered_data_after_a_hole() -> None:
    r = StreamReassembler()
    r.syn(ISN)
    r.feed(ISN + 1 + 100, b"tail", 0, 2)
    pieces = r.flush()
    assert [(p.offset, p.gap, p.data) for p in pieces] == [(100, 100, b"tail")]


def test_midstream_start_anchors_on_first_byte_seen() -> None:
    r = StreamReassembler()
    out = r.feed(123456, b"abc", 0, 1) + r.feed(123459, b"def", 0, 2)
    assert b"".join(p.data for p in out) == b"abcdef"


def test_out_of_order_buffer_is_bounded() -> None:
    """Data above a hole that is never filled cannot grow memory past the limit."""
    r = StreamReassembler(max_ooo=1000)
    r.syn(ISN)
    delivered = []
    for i in range(50):
        delivered += r.feed(ISN + 1 + 10 + i * 100, b"x" * 100, 0, i)
    assert "ooo-buffer-full" in r.anomalies
    assert sum(len(p.data) for p in delivered) > 0
    assert r._pending_bytes <= 1000
