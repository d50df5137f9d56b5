"""The fast path for big captures: packets nobody needs the bytes of never become objects.

A day-long capture is gigabytes of audio and downloads around a few hundred handshakes. Once a
connection's direction is `discard` (its bytes are not HTTP, or its WebSocket frames are done),
the slow path still builds a `Record`, a `Segment` and walks `ConnectionTable.feed` and
`Conversation.feed` for every packet, only to move a sequence number. Here the reader shows each
Ethernet record to `Bypass.skip` while it is still bytes in the read buffer; one `struct` unpack
of the fixed Ethernet + IPv4 + TCP fields decides, and a packet is consumed in place when it
cannot change anything but the bookkeeping, which is then done exactly as the slow path does it:

- a TCP segment without SYN, FIN or RST, of a connection already tracked (looked up by the raw
  12 bytes of addresses and ports), whose payload is empty or goes to a `discard` stream, and
  whose ACK the peer stream would ignore (peer `discard`, or the same ACK as last time while the
  peer's stream has not moved: `StreamReassembler.ack_is_noop`): capture time, the connection's
  last activity, its LRU place, the sweep counter, `tcp_segments` and the sender's stream
  offset are updated in place;
- an IPv4 packet that is neither TCP nor a tunnel wsdiag follows (UDP RTP, DNS, ICMP): the slow
  path would decode it to nothing, without an anomaly, so it is dropped.

Everything else (SYN, FIN, RST, HTTP, the first packets of every connection, VLAN, IPv6, any
header the slow path would name an anomaly for) takes the slow path unchanged, so `tcp.stream`
numbers, handshakes, verdicts and anomalies are the same as without the fast path (tests in
tests/test_fastpath.py compare both on every capture we have).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from analyzer.handshake import Conversation
from analyzer.limits import Limits
from analyzer.model import Endpoint, InputSummary
from analyzer.pipeline import ConnectionTable
from analyzer.sources.decode import AnomalyLog, decode
from analyzer.sources.pcapfile import Progress, open_input, read_records
from analyzer.tcp import HALF, MOD

# From the Ethernet type on: ethertype, IPv4 version/IHL, total length, flags + fragment offset,
# protocol, the 12 bytes src addr + dst addr + src port + dst port, seq, ack, data offset, flags.
_FIXED = struct.Struct("!HBxH2xHxB2x12sIIBB")
_FIXED_END = 12 + _FIXED.size  # 48: the fields end with the TCP flags byte
_MIN_FRAME = 54  # Ethernet + IPv4 + TCP without options: shorter frames take the slow path
_FOLLOWED = frozenset({4, 41, 47})  # IP-in-IP, 6in4, GRE: tunnels the slow path looks into
_GTP_U = 2152  # UDP port of GTP-U, also followed
_SYN_FIN_RST = 0x07
_ACK = 0x10
_SWEEP_EVERY = 1024  # must match ConnectionTable.feed

# One tracked direction of a connection: [conversation, sender's stream, peer's stream, table
# key, last ACK known to be a no-op for the peer, the peer's stream offset when it was checked].
_Entry = list


class Bypass:
    """The raw-bytes side door into a `ConnectionTable` (see the module docstring)."""

    def __init__(self, table: ConnectionTable, summary: InputSummary) -> None:
        self.table = table
        self.summary = summary
        self.fast: dict[bytes, _Entry] = {}
        self.keys_of: dict[int, list[bytes]] = {}  # tcp.stream -> raw keys registered for it
        self.skipped = 0
        table.on_close = self._forget

    def _forget(self, conv: Conversation) -> None:
        fast = self.fast
        for key in self.keys_of.pop(conv.tcp_stream, ()):
            ent = fast.get(key)
            if ent is not None and ent[0] is conv:
                del fast[key]

    def register(self, data: bytes, conv: Conversation, src: Endpoint, dst: Endpoint, ack: int) -> None:
        """After the slow path fed a segment of `data` (Ethernet/IPv4/TCP) to `conv`: track its
        direction by raw key, and note whether its ACK is a no-op for the peer's stream."""
        sides = conv.sides
        sst, peer = sides[src].stream, sides[dst].stream
        if sst.discard:
            sst.release()
        if peer.discard:
            peer.release()
        if conv.client is None:
            return
        a, b = conv.a, conv.b
        if self.table.table.get((a.ip, a.port, b.ip, b.port)) is not conv:
            return  # finished already (expired by the sweep that ran after it was fed)
        key = data[26:38]
        ent = self.fast.get(key)
        if ent is None or ent[0] is not conv:
            ent = [conv, sst, peer, (a.ip, a.port, b.ip, b.port), -1, -1]
            self.fast[key] = ent
            self.keys_of.setdefault(conv.tcp_stream, []).append(key)
        if peer.started and peer.ack_is_noop(ack):
            ent[4], ent[5] = ack, peer.next_offset
        else:
            ent[4] = ent[5] = -1

    def make_skip(self) -> Callable[[bytes, int, int, int], bool]:
        """The `skip` callback for `read_records`: True when the record was consumed here."""
        unpack = _FIXED.unpack_from
        get = self.fast.get
        table = self.table
        move_to_end = table.table.move_to_end
        summary = self.summary
        sweep = table.sweep

        def skip(buf: bytes, s: int, caplen: int, ts: int) -> bool:
            if caplen < _MIN_FRAME:
                return False
            et, vihl, total, frag, proto, key, seq, ack, doff, flags = unpack(buf, s + 12)
            if et != 0x0800 or vihl != 0x45 or frag & 0x3FFF or total > caplen - 14:
                return False
            if proto != 6:
                # decode() would find no TCP in it and report nothing: drop it here
                if total < 20 or proto in _FOLLOWED:
                    return False
                return not (proto == 17 and _GTP_U in ((key[8] << 8) | key[9], (key[10] << 8) | key[11]))
            ent = get(key)
            if ent is None or flags & _SYN_FIN_RST:
                return False
            hl = (doff >> 4) << 2
            if hl < 20 or total < 40 or hl > total - 20:
                return False
            conv, sst, pst, tkey, noop_ack, noop_next = ent
            plen = total - 20 - hl
            if plen and not sst.discard:
                return False
            if (
                flags & _ACK
                and not pst.discard
                and pst._base is not None
                and (ack != noop_ack or pst._next != noop_next)
            ):
                return False
            if plen:  # StreamReassembler.feed() of a discarded stream, inlined
                if ts > conv.last_data_ns:
                    conv.last_data_ns = ts
                base = sst._base
                if base is None:
                    return False
                nxt = sst._next
                delta = (seq - base - nxt) % MOD
                if delta >= HALF:
                    delta -= MOD
                start = nxt + delta
                if start < 0:
                    sst.retransmitted += 1
                elif start + plen > nxt:
                    sst._next = start + plen
            # Conversation.feed() and ConnectionTable.feed() for this segment
            if ts > conv.last_ns:
                conv.last_ns = ts
            if ts > table.now_ns:
                table.now_ns = ts
            move_to_end(tkey)
            summary.tcp_segments += 1
            table._since_sweep += 1
            if table._since_sweep >= _SWEEP_EVERY:
                sweep()
            return True

        return skip


def harvest_into(
    path: str, summary: InputSummary, limits: Limits, table: ConnectionTable, progress: Progress | None = None
) -> None:
    """`run.file_segments` + `ConnectionTable.feed`, with bulk packets consumed by `Bypass`."""
    log = AnomalyLog(summary.anomalies, limits)
    bypass = Bypass(table, summary)
    skip = bypass.make_skip()
    feed = table.feed
    register = bypass.register
    with open_input(path) as stream:
        if progress is not None:  # position in the file itself (compressed bytes for .gz)
            raw = getattr(stream, "_raw_input", stream)
            if raw is not stream and raw.seekable():
                tell, report = raw.tell, progress
                progress = lambda _offset: report(tell())  # noqa: E731
        for rec in read_records(stream, summary, limits, skip, progress):
            data = rec.data
            seg = decode(rec.linktype, data, rec.frame, rec.ts_ns, log)
            if seg is None:
                continue
            summary.tcp_segments += 1
            conv = feed(seg)
            if (
                rec.linktype == 1
                and len(data) >= _MIN_FRAME
                and data[12] == 8
                and data[13] == 0
                and data[14] == 0x45
                and data[23] == 6
            ):
                register(data, conv, seg.src, seg.dst, seg.ack)


__all__ = ["Bypass", "harvest_into"]
