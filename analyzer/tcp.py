"""Per-direction TCP byte-stream reassembly: in-order bytes out, gaps named, never zero-filled.

Learned from gopacket's reassembly contract and Zeek/Suricata's limits:
- sequence numbers are unwrapped to 64-bit stream offsets, so a stream may cross 2**32;
- the first copy of a byte wins; a retransmission carrying different bytes is an anomaly
  (`rexmit-inconsistency`), not a silent overwrite as in scapy's TCPSession;
- out-of-order data is buffered up to a bound; a hole is skipped (and reported as a gap) only when
  the peer acknowledged past it and data above it has arrived, when the buffer is full, or when
  the stream ends. An ACK alone never skips: a capture point may record the ACK before the
  segment it acknowledges (or a hostile peer may acknowledge bytes never sent), and the
  segment, when it comes, is then delivered, not dropped as old;
- a stream can stop keeping bytes (`discard`) once nobody needs them, so bulk traffic costs
  only sequence bookkeeping.
"""

from __future__ import annotations

from dataclasses import dataclass

MOD = 1 << 32
HALF = 1 << 31
RECENT_WINDOW = 16 * 1024  # delivered bytes kept to compare retransmissions with


@dataclass(frozen=True, slots=True)
class Piece:
    """In-order stream content: `data` at stream `offset`, or a hole of `gap` bytes before it."""

    offset: int
    data: bytes
    ts_ns: int
    frame: int
    gap: int = 0


class StreamReassembler:
    """Reassembles one direction of one TCP connection. Pure: fed values, returns values."""

    __slots__ = (
        "_acked",
        "_base",
        "_fin",
        "_next",
        "_pending",
        "_pending_bytes",
        "_recent",
        "anomalies",
        "discard",
        "gaps",
        "max_ooo",
        "max_ooo_segments",
        "retransmitted",
    )

    def __init__(self, max_ooo: int = 256 * 1024, max_ooo_segments: int = 512) -> None:
        self._base: int | None = None  # absolute sequence number of stream offset 0
        self._next = 0  # next expected stream offset
        self._fin: int | None = None  # stream offset of the FIN (it takes one sequence number)
        self._acked = 0  # stream offset the peer acknowledged: holes below it were not captured
        self._pending: dict[int, tuple[bytes, int, int]] = {}  # offset -> (data, ts, frame)
        self._pending_bytes = 0
        self._recent = bytearray()  # last delivered bytes, ending at self._next
        self.max_ooo = max_ooo
        self.max_ooo_segments = max_ooo_segments  # bounds the per-segment work of `_hold` too
        self.discard = False
        self.gaps = 0
        self.retransmitted = 0
        self.anomalies: list[str] = []

    @property
    def started(self) -> bool:
        return self._base is not None

    @property
    def next_offset(self) -> int:
        return self._next

    def syn(self, seq: int) -> None:
        """A SYN fixes the stream start: data begins one past the SYN's sequence number."""
        if self._base is None:
            self._base = (seq + 1) % MOD

    def fin(self, seq: int, payload_len: int) -> None:
        """A FIN ends the stream; the peer's ACK of the FIN itself is not a byte we missed."""
        if self._base is None:
            self._base = seq
        self._fin = self._offset(seq) + payload_len

    def _offset(self, seq: int) -> int:
        """Unwraps a 32-bit sequence number to the stream offset nearest the current position."""
        assert self._base is not None
        here = (self._base + self._next) % MOD
        delta = (seq - here) % MOD
        if delta >= HALF:
            delta -= MOD
        return self._next + delta

    def feed(self, seq: int, payload: bytes, ts_ns: int, frame: int) -> list[Piece]:
        if not payload:
            return []
        if self._base is None:
            self._base = seq  # capture started mid-stream: the first byte seen is offset 0
        start = self._offset(seq)
        if start < 0:  # data from before the first byte we anchored on: cannot be placed
            self.retransmitted += 1
            return []
        if self.discard:
            self._next = max(self._next, start + len(payload))
            return []
        if start < self._next:
            payload, start = self._trim_delivered(start, payload)
            if not payload:
                return []
        if start > self._next:
            self._hold(start, payload, ts_ns, frame)
            out: list[Piece] = []
            while self._pending and min(self._pending) <= self._acked:  # the peer had acknowledged the hole
                out.extend(self.skip_hole())
            # Give up on holes until the buffer is within both bounds again: one skip is not
            # enough when many small segments sit below a big one (memory would grow).
            while self._pending and (
                self._pending_bytes > self.max_ooo or len(self._pending) > self.max_ooo_segments
            ):
                self._note("ooo-buffer-full")
                out.extend(self.skip_hole())
            return out
        return self._deliver(Piece(start, payload, ts_ns, frame))

    def release(self) -> None:
        """Once `discard` is set, frees what only delivery needed (the window of recent bytes kept
        to compare retransmissions, and held out-of-order data): a discarding stream delivers
        nothing more, so results are unchanged, and a long capture's memory stays flat."""
        if self.discard and (self._recent or self._pending):
            self._recent = bytearray()
            self._pending.clear()
            self._pending_bytes = 0

    def ack_is_noop(self, ack: int) -> bool:
        """Would `acked(ack)` do nothing because it acknowledges no byte past `next_offset`?

        While `next_offset` stays where it is, the same `ack` stays a no-op: the fast path
        (`analyzer.fastpath`) relies on that to skip repeated acknowledgements.
        """
        if self._base is None or self.discard:
            return True
        upto = self._offset(ack)
        if self._fin is not None and upto > self._fin:
            upto = self._fin
        return upto <= max(self._next, self._acked)  # held data all lies above `_acked`

    def acked(self, ack: int) -> list[Piece]:
        """The peer acknowledged up to `ack`: bytes below it that we never saw were not captured."""
        if self._base is None or self.discard:
            return []
        upto = self._offset(ack)
        if self._fin is not None and upto > self._fin:
            upto = self._fin
        if upto <= self._next or upto - self._next > HALF:
            return []
        self._acked = max(self._acked, upto)
        out: list[Piece] = []
        while self._pending and min(self._pending) <= upto:
            out.extend(self.skip_hole())
        return out

    def skip_hole(self) -> list[Piece]:
        """Gives up on the hole before the lowest buffered segment and delivers what follows it."""
        if not self._pending:
            return []
        first = min(self._pending)
        data, ts, frame = self._pending.pop(first)
        self._pending_bytes -= len(data)
        gap = first - self._next
        self._next = first
        self._recent.clear()
        self.gaps += 1
        return self._deliver(Piece(first, data, ts, frame, gap=gap))

    def flush(self) -> list[Piece]:
        """End of stream: deliver everything buffered, naming each hole."""
        if self.discard:  # nobody wants the bytes; `_next` moved past them without pieces
            self._pending.clear()
            self._pending_bytes = 0
            return []
        out: list[Piece] = []
        while self._pending:
            out.extend(self.skip_hole())
        if self._acked > self._next:  # acknowledged, never captured, and nothing came after
            out.append(self._gap_to(self._acked))
        return out

    def _gap_to(self, upto: int) -> Piece:
        gap = upto - self._next
        self._next = upto
        self._recent.clear()
        self.gaps += 1
        return Piece(upto, b"", 0, 0, gap=gap)

    def _trim_delivered(self, start: int, payload: bytes) -> tuple[bytes, int]:
        """Drops the part already delivered, comparing it with what we delivered then."""
        overlap = min(self._next - start, len(payload))
        self.retransmitted += 1
        recent_start = self._next - len(self._recent)
        if start >= recent_start:
            old = self._recent[start - recent_start : start - recent_start + overlap]
            if bytes(old) != payload[:overlap]:
                self._note("rexmit-inconsistency")
        return payload[overlap:], start + overlap

    def _hold(self, start: int, payload: bytes, ts_ns: int, frame: int) -> None:
        """Buffers out-of-order data; where it overlaps data already held, the held copy wins."""
        pieces = [(start, payload)]
        stop = start + len(payload)
        for ostart, (odata, _, _) in self._pending.items():
            oend = ostart + len(odata)
            if oend <= start or ostart >= stop:  # the common case: no overlap at all
                continue
            kept: list[tuple[int, bytes]] = []
            for s, d in pieces:
                e = s + len(d)
                if e <= ostart or s >= oend:
                    kept.append((s, d))
                    continue
                lo, hi = max(s, ostart), min(e, oend)
                if d[lo - s : hi - s] != odata[lo - ostart : hi - ostart]:
                    self._note("rexmit-inconsistency")
                self.retransmitted += 1
                if s < lo:
                    kept.append((s, d[: lo - s]))
                if hi < e:
                    kept.append((hi, d[hi - s :]))
            pieces = kept
        for s, d in pieces:
            self._pending[s] = (d, ts_ns, frame)
            self._pending_bytes += len(d)

    def _note(self, name: str) -> None:
        """Each anomaly name once per direction (the report shows names, not counts)."""
        if name not in self.anomalies:
            self.anomalies.append(name)

    def _deliver(self, piece: Piece) -> list[Piece]:
        out = [piece]
        self._advance(piece.data)
        while self._pending:
            nxt = min(self._pending)
            if nxt > self._next:
                break
            data, ts, frame = self._pending.pop(nxt)
            self._pending_bytes -= len(data)
            if nxt < self._next:
                data, nxt = self._trim_delivered(nxt, data)
                if not data:
                    continue
            out.append(Piece(nxt, data, ts, frame))
            self._advance(data)
        return out

    def _advance(self, data: bytes) -> None:
        self._next += len(data)
        self._recent += data
        if len(self._recent) > RECENT_WINDOW:
            del self._recent[: len(self._recent) - RECENT_WINDOW]
