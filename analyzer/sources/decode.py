"""Turn one captured record (link type, bytes) into a TCP `Segment`, or None.

Why not scapy for everything: dissecting a packet with scapy costs ~100 us, so a capture of a
million packets would take minutes. The link layers seen in practice (Ethernet with VLAN /
QinQ / PPPoE, Linux SLL and SLL2, raw IP, NULL/LOOP, Cisco HDLC, ARCNET, NFLOG) and IPv4 /
IPv6 / TCP are parsed here with plain indexing and `struct`, bounded by the captured length.
Only other link types (802.11 + radiotap, PPI, PPP, ...) go through scapy, imported lazily on
first use (importing it takes a second or more), and only to find the IP header: IP and TCP
are always parsed by the same code below.

Anomalies are reported through a sink: any `Callable[[Anomaly], None]` (e.g.
`summary.anomalies.append`), or better an `AnomalyLog`, which rate-limits per name and
reports `unsupported-linktype` once per link type.
"""

from __future__ import annotations

import dataclasses
import socket
import struct
from collections.abc import Callable, Hashable
from typing import Any

from analyzer.limits import DEFAULT_LIMITS, Limits
from analyzer.model import Anomaly, Endpoint, Segment

AnomalySink = Callable[[Anomaly], None]
"""Where decode reports what it read past; `list.append` will do, `AnomalyLog` is better."""


class AnomalyLog:
    """A rate-limited anomaly sink over a list (usually `InputSummary.anomalies`).

    At most `limits.max_anomaly_samples` anomalies are kept per name (Zeek's weird sampling).
    Past that, the last kept sample of that name is replaced by a copy whose detail ends in
    "(+N more not listed)", so the list stays bounded but the count is never lost, and nothing
    has to be flushed at the end. `counts` has the exact number seen per name.
    """

    __slots__ = ("_last", "_max", "_once", "_out", "counts")

    def __init__(self, out: list[Anomaly], limits: Limits = DEFAULT_LIMITS) -> None:
        self._out = out
        self._max = max(1, limits.max_anomaly_samples)
        self.counts: dict[str, int] = {}
        self._last: dict[str, tuple[int, Anomaly]] = {}
        self._once: set[Hashable] = set()

    def __call__(self, anomaly: Anomaly) -> None:
        name = anomaly.name
        n = self.counts.get(name, 0) + 1
        self.counts[name] = n
        out = self._out
        if n <= self._max:
            out.append(anomaly)
            if n == self._max:
                self._last[name] = (len(out) - 1, anomaly)
            return
        idx, sample = self._last[name]
        if idx < len(out) and out[idx].name == name:
            out[idx] = Anomaly(name, f"{sample.detail} (+{n - self._max} more not listed)", sample.frame)

    def once(self, key: Hashable) -> bool:
        """True the first time `key` is seen: for anomalies that are reported once, not per packet."""
        if key in self._once:
            return False
        self._once.add(key)
        return True


def _report(sink: AnomalySink | None, name: str, detail: str, frame: int) -> None:
    if sink is not None:
        sink(Anomaly(name, detail, frame))


def _report_once(sink: AnomalySink | None, key: Hashable, name: str, detail: str, frame: int) -> None:
    if sink is None:
        return
    once = getattr(sink, "once", None)
    if once is None or once(key):
        sink(Anomaly(name, detail, frame))


# --------------------------------------------------------------------------------------------
# Link layers. Each returns (offset of the IP header, IP version 4/6, end of the link payload;
# -1 = end of the frame), or one of:
_TRUNC = (-1, 0, -1)  # the link header itself is cut short
_NOT_IP = (-2, 0, -1)  # a valid frame that carries no IP (ARP, LLDP, STP, ...): None, silently
Link = tuple[int, int, int]

_VLAN_TYPES = frozenset({0x8100, 0x88A8, 0x9100, 0x9200, 0x9300})
_MAX_TAGS = 8


def _ethertype(d: bytes, et: int, off: int) -> Link:
    """Follow an ethertype through VLAN tags, LLC/SNAP and PPPoE to IPv4 / IPv6."""
    n = len(d)
    for _ in range(_MAX_TAGS):
        if et == 0x0800:
            return off, 4, -1
        if et == 0x86DD:
            return off, 6, -1
        if et in _VLAN_TYPES:  # 802.1Q / 802.1ad / QinQ: 2 bytes TCI, then the next type
            if n < off + 4:
                return _TRUNC
            et = (d[off + 2] << 8) | d[off + 3]
            off += 4
        elif et == 0x8864:  # PPPoE session: 6-byte header, then a 2-byte PPP protocol
            if n < off + 8:
                return _TRUNC
            proto = (d[off + 6] << 8) | d[off + 7]
            # the PPPoE length bounds the packet: Ethernet padding after it is not IP payload
            stop = min(n, off + 6 + ((d[off + 4] << 8) | d[off + 5]))
            if proto == 0x0021:
                return off + 8, 4, stop
            if proto == 0x0057:
                return off + 8, 6, stop
            return _NOT_IP
        elif et <= 1500:  # 802.3 length: only LLC/SNAP can carry IP
            if n < off + 8:
                return _TRUNC
            if d[off] != 0xAA or d[off + 1] != 0xAA or d[off + 2] != 0x03:
                return _NOT_IP
            et = (d[off + 6] << 8) | d[off + 7]
            off += 8
        else:
            return _NOT_IP
    return _NOT_IP


def _link_ether(d: bytes) -> Link:
    if len(d) < 14:
        return _TRUNC
    et = (d[12] << 8) | d[13]
    if et == 0x0800:
        return 14, 4, -1
    return _ethertype(d, et, 14)


def _link_sll(d: bytes) -> Link:
    # pkttype(2) hatype(2) halen(2) addr(8) protocol(2)
    if len(d) < 16:
        return _TRUNC
    return _ethertype(d, (d[14] << 8) | d[15], 16)


def _link_sll2(d: bytes) -> Link:
    # protocol(2) reserved(2) ifindex(4) hatype(2) pkttype(1) halen(1) addr(8)
    if len(d) < 20:
        return _TRUNC
    return _ethertype(d, (d[0] << 8) | d[1], 20)


def _link_chdlc(d: bytes) -> Link:
    # address(1) control(1) protocol(2, an ethertype)
    if len(d) < 4:
        return _TRUNC
    return _ethertype(d, (d[2] << 8) | d[3], 4)


# BSD address families for IP: AF_INET is 2 everywhere; AF_INET6 is 24 (NetBSD, OpenBSD,
# BSD/OS), 28 (FreeBSD, DragonFly) or 30 (macOS).
_AF_VERSION = {2: 4, 24: 6, 28: 6, 30: 6}


def _link_null(d: bytes) -> Link:
    """BSD loopback: a 4-byte family in the *capturing host's* byte order."""
    if len(d) < 4:
        return _TRUNC
    fam = d[0] | (d[1] << 8) | (d[2] << 16) | (d[3] << 24)
    if fam & 0xFFFF0000:  # written big-endian: families are small numbers
        fam = (d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]
    v = _AF_VERSION.get(fam)
    return (4, v, -1) if v else _NOT_IP


def _link_loop(d: bytes) -> Link:
    """OpenBSD loopback: the same 4-byte family, always big-endian."""
    if len(d) < 4:
        return _TRUNC
    v = _AF_VERSION.get((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3])
    return (4, v, -1) if v else _NOT_IP


def _link_raw(d: bytes) -> Link:
    if not d:
        return _TRUNC
    v = d[0] >> 4
    return (0, v, -1) if v in (4, 6) else _NOT_IP


def _link_ipv4(d: bytes) -> Link:
    return 0, 4, -1


def _link_ipv6(d: bytes) -> Link:
    return 0, 6, -1


_ARC_IP, _ARC_IP6, _ARC_IP_OLD = 0xD4, 0xC4, 0xF0


def _link_arcnet(d: bytes) -> Link:
    """Linux ARCNET (RFC 1201): src, dst, offset(2), type, then flag + seqid for new types."""
    if len(d) < 5:
        return _TRUNC
    arc_type = d[4]
    if arc_type == _ARC_IP_OLD:
        return 5, 4, -1
    if arc_type not in (_ARC_IP, _ARC_IP6):
        return _NOT_IP
    if len(d) < 8:
        return _TRUNC
    off = 8
    if d[5] == 0xFF:  # exception packet: 4 more bytes of header
        off = 12
    elif d[5] != 0:  # RFC 1201 fragment of a split packet: not a whole IP datagram
        return _NOT_IP
    return off, (4 if arc_type == _ARC_IP else 6), -1


_NFULA_PAYLOAD = 9


def _link_nflog(d: bytes) -> Link:
    """Linux NFLOG: family, version, resource id, then TLVs (host byte order) until the payload."""
    n = len(d)
    if n < 4:
        return _TRUNC
    fam = d[0]
    version = 4 if fam == 2 else 6 if fam == 10 else 0
    off = 4
    for _ in range(64):
        if n - off < 4:
            return _TRUNC
        tlen = d[off] | (d[off + 1] << 8)
        ttype = (d[off + 2] | (d[off + 3] << 8)) & 0x7FFF
        if tlen < 4 or tlen > n - off:  # try the other byte order (big-endian host)
            tlen = (d[off] << 8) | d[off + 1]
            ttype = ((d[off + 2] << 8) | d[off + 3]) & 0x7FFF
            if tlen < 4 or tlen > n - off:
                return _TRUNC
        if ttype == _NFULA_PAYLOAD:
            if not version:
                return _NOT_IP
            return off + 4, version, off + tlen
        off += (tlen + 3) & ~3
    return _NOT_IP


_LINKS: dict[int, Callable[[bytes], Link]] = {
    0: _link_null,
    1: _link_ether,
    12: _link_raw,  # DLT_RAW on most platforms
    14: _link_raw,  # DLT_RAW on OpenBSD
    101: _link_raw,  # LINKTYPE_RAW
    104: _link_chdlc,
    108: _link_loop,
    113: _link_sll,
    129: _link_arcnet,
    228: _link_ipv4,
    229: _link_ipv6,
    239: _link_nflog,
    276: _link_sll2,
}


def _mac(b: bytes) -> str:
    return b.hex(":")


_MAC_CACHE: dict[bytes, tuple[str, str]] = {}
_MAC_CACHE_MAX = 1 << 12


def _ether_macs(d: bytes) -> tuple[str, str]:
    """(src, dst) of an Ethernet header; the same few pairs repeat, so strings are cached."""
    key = d[:12]
    macs = _MAC_CACHE.get(key)
    if macs is None:
        if len(_MAC_CACHE) >= _MAC_CACHE_MAX:
            _MAC_CACHE.clear()
        macs = _MAC_CACHE[key] = (_mac(d[6:12]), _mac(d[0:6]))
    return macs


def _native_macs(linktype: int, d: bytes) -> tuple[str | None, str | None]:
    """(src, dst) MAC: Ethernet has both; SLL/SLL2 carry only the sender's address."""
    if linktype == 1:
        return _ether_macs(d)
    if linktype == 113 and d[4] == 0 and d[5] == 6:
        return _mac(d[6:12]), None
    if linktype == 276 and d[11] == 6:
        return _mac(d[12:18]), None
    return None, None


# --------------------------------------------------------------------------------------------
# IP and TCP

_MAX_IP_NESTING = 4  # IP-in-IP / 6in4 / 4in6 layers followed
_MAX_V6_EXT = 8  # IPv6 extension headers walked (reliability.md D6)
_V6_EXT = frozenset({0, 43, 60, 135, 139, 140})  # hop-by-hop, routing, dest opts, mobility, HIP, shim6

_ntoa = socket.inet_ntoa


def _ntop6(b: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET6, b)


_EP_CACHE: dict[tuple[bytes, int], Endpoint] = {}
# A few thousand covers the endpoints of the connections open at once; 65,536 cost ~20 MB of a
# day-long capture's peak memory (every client port ever seen) for no better hit rate.
_EP_CACHE_MAX = 1 << 12


def _endpoint(addr: bytes, port: int) -> Endpoint:
    """Endpoints are immutable and repeat for every packet of a flow: build each once."""
    key = (addr, port)
    ep = _EP_CACHE.get(key)
    if ep is None:
        if len(_EP_CACHE) >= _EP_CACHE_MAX:
            _EP_CACHE.clear()
        ep = Endpoint(_ntoa(addr) if len(addr) == 4 else _ntop6(addr), port)
        _EP_CACHE[key] = ep
    return ep


_tcp_hdr = struct.Struct("!HHIIBB").unpack_from
_v4_hdr = struct.Struct("!BxHxxHxB").unpack_from  # version/IHL, total length, flags+offset, protocol


def _segment_factory() -> Callable[..., Segment]:
    """A faster `Segment(...)`: frozen dataclasses pay `object.__setattr__` per field in
    `__init__` (~1.5 us for Segment, a third of a decode); setting the slots directly builds
    the same object in half the time. Falls back to the class itself if `Segment` ever stops
    being the 10-slot dataclass this was written for.
    """
    names = tuple(f.name for f in dataclasses.fields(Segment))
    expected = (
        "frame",
        "ts_ns",
        "src",
        "dst",
        "seq",
        "ack",
        "flags",
        "payload",
        "src_mac",
        "dst_mac",
        "checksum_ok",
    )
    if names != expected or "__slots__" not in Segment.__dict__ or hasattr(Segment, "__post_init__"):
        return Segment
    new = object.__new__
    s_frame, s_ts, s_src, s_dst, s_seq, s_ack, s_flags, s_payload, s_smac, s_dmac, s_csum = (
        Segment.__dict__[n].__set__ for n in names
    )

    def make(
        frame: int,
        ts_ns: int,
        src: Endpoint,
        dst: Endpoint,
        seq: int,
        ack: int,
        flags: int,
        payload: bytes,
        src_mac: str | None,
        dst_mac: str | None,
        checksum_ok: bool | None = None,
    ) -> Segment:
        seg: Segment = new(Segment)
        s_frame(seg, frame)
        s_ts(seg, ts_ns)
        s_src(seg, src)
        s_dst(seg, dst)
        s_seq(seg, seq)
        s_ack(seg, ack)
        s_flags(seg, flags)
        s_payload(seg, payload)
        s_smac(seg, src_mac)
        s_dmac(seg, dst_mac)
        s_csum(seg, checksum_ok)
        return seg

    return make


_new_segment = _segment_factory()


def tcp_checksum_ok(src: bytes, dst: bytes, segment: bytes) -> bool:
    """RFC 793/9293 TCP checksum over the IPv4 or IPv6 pseudo-header and the whole segment.

    The one's-complement sum of 16-bit words is the number's value modulo 0xFFFF (2**16 is 1
    modulo 0xFFFF), so two big-integer conversions do in C what a word loop does in Python; a
    correct segment sums to 0xFFFF, which is 0 modulo 0xFFFF."""
    length = len(segment)
    if len(src) == 4:
        pseudo = src + dst + b"\x00\x06" + length.to_bytes(2, "big")
    else:
        pseudo = src + dst + length.to_bytes(4, "big") + b"\x00\x00\x00\x06"
    if length & 1:
        segment += b"\x00"
    return (int.from_bytes(pseudo, "big") + int.from_bytes(segment, "big")) % 0xFFFF == 0


def _gre(d: bytes, off: int, end: int) -> tuple[int, int]:
    """Plain GRE (RFC 2784/2890) carrying IPv4/IPv6: (inner offset, version) or (-1, 0)."""
    if end - off < 4:
        return -1, 0
    flags = (d[off] << 8) | d[off + 1]
    if flags & 0x4007:  # source routing, or version != 0 (PPTP's enhanced GRE carries PPP)
        return -1, 0
    proto = (d[off + 2] << 8) | d[off + 3]
    off += 4 + 4 * ((flags >> 15 & 1) + (flags >> 13 & 1) + (flags >> 12 & 1))  # C, K, S words
    version = 4 if proto == 0x0800 else 6 if proto == 0x86DD else 0
    return (off, version) if version and off <= end else (-1, 0)


_GTP_U_PORT = 2152


def _gtp_u(d: bytes, off: int, end: int) -> tuple[int, int]:
    """UDP to/from 2152 carrying GTP-U (mobile core networks): the user's IP packet inside.

    Only G-PDUs are followed; anything else on UDP is not TCP: (-1, 0).
    """
    if end - off < 16:
        return -1, 0
    sport = (d[off] << 8) | d[off + 1]
    dport = (d[off + 2] << 8) | d[off + 3]
    if sport != _GTP_U_PORT and dport != _GTP_U_PORT:
        return -1, 0
    g = off + 8
    flags = d[g]
    if flags >> 5 != 1 or not flags & 0x10 or d[g + 1] != 0xFF:  # GTPv1, PT=GTP, G-PDU
        return -1, 0
    p = g + 8
    if flags & 0x07:  # sequence number, N-PDU number and next-extension type follow
        if end - p < 4:
            return -1, 0
        next_ext = d[p + 3]
        p += 4
        for _ in range(8):  # extension headers: length in 4-byte units, last byte = next type
            if not (flags & 0x04 and next_ext):
                break
            if p >= end or d[p] == 0:
                return -1, 0
            p += d[p] * 4
            if p > end:
                return -1, 0
            next_ext = d[p - 1]
        else:
            return -1, 0
    if p >= end:
        return -1, 0
    v = d[p] >> 4
    return (p, v) if v in (4, 6) else (-1, 0)


def _ip(
    d: bytes, off: int, version: int, n: int, frame: int, sink: AnomalySink | None
) -> tuple[bytes, bytes, int, int, bool] | None:
    """Find the TCP header inside an IP packet: (src addr, dst addr, tcp offset, end, whole) or
    None. `whole`: the IP length fields were set and everything they cover was captured.

    `end` comes from the IP length fields, not the frame length, so Ethernet padding and
    trailers are not taken for payload. Tunnels (IP-in-IP, 6in4, 4in6, GRE, GTP-U) are
    followed to the innermost header, whose addresses are the ones that identify the
    connection. Nothing at or past `n` (end of the link payload) is read.
    """
    for _ in range(_MAX_IP_NESTING):
        if version == 4:
            if n - off < 20:
                _report(sink, "truncated-header", f"IPv4 header cut at {n - off} bytes", frame)
                return None
            vihl = d[off]
            ihl = (vihl & 0x0F) << 2
            if vihl >> 4 != 4 or ihl < 20:
                _report(sink, "bad-ip-header", f"IPv4 version/IHL byte 0x{vihl:02x}", frame)
                return None
            if n - off < ihl:
                _report(sink, "truncated-header", f"IPv4 header of {ihl} bytes cut at {n - off}", frame)
                return None
            frag = (d[off + 6] << 8) | d[off + 7]
            if frag & 0x3FFF:  # MF set or offset != 0: only a piece of a datagram
                _report(
                    sink,
                    "ip-fragment-not-reassembled",
                    f"IPv4 fragment id {(d[off + 4] << 8) | d[off + 5]} offset {(frag & 0x1FFF) * 8}",
                    frame,
                )
                return None
            total = (d[off + 2] << 8) | d[off + 3]
            whole = False
            if total == 0:  # TSO / checksum offload on the capturing host: length not filled in
                end = n
            elif total < ihl:
                _report(sink, "bad-ip-header", f"IPv4 total length {total} < header length {ihl}", frame)
                return None
            else:
                end, whole = off + total, True
                if end > n:
                    _report(sink, "truncated-ip", f"IPv4 packet of {total} bytes, {n - off} captured", frame)
                    end, whole = n, False
            proto = d[off + 9]
            src, dst = d[off + 12 : off + 16], d[off + 16 : off + 20]
            off += ihl
        elif version == 6:
            if n - off < 40:
                _report(sink, "truncated-header", f"IPv6 header cut at {n - off} bytes", frame)
                return None
            if d[off] >> 4 != 6:
                _report(sink, "bad-ip-header", f"IPv6 version nibble {d[off] >> 4}", frame)
                return None
            plen = (d[off + 4] << 8) | d[off + 5]
            proto = d[off + 6]
            src, dst = d[off + 8 : off + 24], d[off + 24 : off + 40]
            whole = False
            if plen == 0:  # jumbogram or offload: take what was captured
                end = n
            else:
                end, whole = off + 40 + plen, True
                if end > n:
                    _report(
                        sink, "truncated-ip", f"IPv6 payload of {plen} bytes, {n - off - 40} captured", frame
                    )
                    end, whole = n, False
            off += 40
            for _hop in range(_MAX_V6_EXT + 1):
                if proto in _V6_EXT or proto == 51 or proto == 44:
                    if _hop == _MAX_V6_EXT:
                        _report(
                            sink, "ipv6-extension-chain-too-long", f"more than {_MAX_V6_EXT} headers", frame
                        )
                        return None
                    if end - off < 8:
                        _report(sink, "truncated-header", "IPv6 extension header cut short", frame)
                        return None
                    if proto == 44:  # fragment header
                        fo = (d[off + 2] << 8) | d[off + 3]
                        if fo & 0xFFF9:  # offset != 0 or M set
                            _report(
                                sink,
                                "ip-fragment-not-reassembled",
                                f"IPv6 fragment offset {fo & 0xFFF8}",
                                frame,
                            )
                            return None
                        hlen = 8
                    elif proto == 51:  # AH counts 4-byte units, minus 2
                        hlen = (d[off + 1] + 2) << 2
                    else:
                        hlen = (d[off + 1] + 1) << 3
                    proto = d[off]
                    off += hlen
                else:
                    break
            if off > end:
                _report(sink, "truncated-header", "IPv6 extension header cut short", frame)
                return None
        else:
            return None
        if proto == 6:
            return src, dst, off, end, whole
        if proto == 4:
            version = 4
        elif proto == 41:
            version = 6
        elif proto == 47:
            off, version = _gre(d, off, end)
        elif proto == 17:
            off, version = _gtp_u(d, off, end)
        else:
            return None
        if off < 0:
            return None
        n = end  # the inner packet cannot extend past the outer one
    _report(sink, "ip-nesting-too-deep", f"more than {_MAX_IP_NESTING} IP headers", frame)
    return None


def _segment(
    d: bytes,
    off: int,
    version: int,
    stop: int,
    frame: int,
    ts_ns: int,
    sink: AnomalySink | None,
    src_mac: str | None,
    dst_mac: str | None,
    linktype: int,
) -> Segment | None:
    found = _ip(d, off, version, len(d) if stop < 0 else stop, frame, sink)
    if found is None:
        return None
    src, dst, t, end, whole = found
    if end - t < 20:
        _report(sink, "truncated-header", f"TCP header cut at {max(0, end - t)} bytes", frame)
        return None
    sport, dport, seq, ack, doff, flags = _tcp_hdr(d, t)
    hl = (doff >> 4) << 2
    if hl < 20:
        _report(sink, "bad-tcp-header-length", f"TCP data offset {hl} < 20", frame)
        return None
    if end - t < hl:
        _report(sink, "truncated-header", f"TCP header of {hl} bytes cut at {end - t}", frame)
        return None
    if linktype >= 0:
        src_mac, dst_mac = _native_macs(linktype, d)
    payload = d[t + hl : end]
    return _new_segment(
        frame,
        ts_ns,
        _endpoint(src, sport),
        _endpoint(dst, dport),
        seq,
        ack,
        flags,
        payload,
        src_mac,
        dst_mac,
        tcp_checksum_ok(src, dst, d[t:end]) if payload and whole else None,
    )


def decode(
    linktype: int, data: bytes, frame: int, ts_ns: int, anomalies: AnomalySink | None = None
) -> Segment | None:
    """The TCP segment in one captured packet, or None (not TCP, or unreadable: see anomalies).

    Truncated link/IP/TCP headers give `truncated-header`; IP fragments give
    `ip-fragment-not-reassembled` (only a datagram with offset 0 and MF clear is whole); an IP
    packet longer than what was captured is kept with `truncated-ip` (the payload is then
    short, which the reassembler sees as a gap). Link types neither parsed here nor known to
    scapy give `unsupported-linktype`, once per link type with an `AnomalyLog`.
    """
    # Fast path for what most captures hold: Ethernet + IPv4 (no options, not a fragment, length
    # consistent) + TCP. Anything else, including every malformed case, takes the general path,
    # which gives the same segment or the anomaly.
    if linktype == 1 and len(data) >= 54 and data[12] == 8 and data[13] == 0:
        vihl, total, frag, proto = _v4_hdr(data, 14)
        if vihl == 0x45 and proto == 6 and not frag & 0x3FFF and 40 <= total <= len(data) - 14:
            sport, dport, seq, ack, doff, flags = _tcp_hdr(data, 34)
            hl = (doff >> 4) << 2
            if 20 <= hl <= total - 20:
                macs = _ether_macs(data)
                payload = data[34 + hl : 14 + total]
                return _new_segment(
                    frame,
                    ts_ns,
                    _endpoint(data[26:30], sport),
                    _endpoint(data[30:34], dport),
                    seq,
                    ack,
                    flags,
                    payload,
                    macs[0],
                    macs[1],
                    tcp_checksum_ok(data[26:30], data[30:34], data[34 : 14 + total]) if payload else None,
                )
    if not data:
        return None
    link = _LINKS.get(linktype)
    if link is not None:
        off, version, stop = link(data)
        if off >= 0:
            return _segment(data, off, version, stop, frame, ts_ns, anomalies, None, None, linktype)
        if off == -1:
            detail = f"link header (type {linktype}) cut at {len(data)} bytes"
            _report(anomalies, "truncated-header", detail, frame)
        return None
    found = _scapy_ip(linktype, data, frame, anomalies)
    if found is None:
        return None
    ip_bytes, version, src_mac, dst_mac = found
    return _segment(ip_bytes, 0, version, -1, frame, ts_ns, anomalies, src_mac, dst_mac, -1)


# --------------------------------------------------------------------------------------------
# scapy fallback

_SCAPY_CLASSES: dict[int, Any] = {}
_scapy_loaded = False


def _scapy_class(linktype: int) -> Any:
    """scapy's dissector class for a link type, or None; cached, scapy imported on first use."""
    global _scapy_loaded
    if linktype in _SCAPY_CLASSES:
        return _SCAPY_CLASSES[linktype]
    try:
        from scapy.config import conf

        if not _scapy_loaded:
            # the modules that register the link types we expect here, and bind IP under them
            import scapy.layers.dot11
            import scapy.layers.inet
            import scapy.layers.inet6
            import scapy.layers.l2
            import scapy.layers.ppi
            import scapy.layers.ppp

            _scapy_loaded = True
        cls = conf.l2types.get(linktype)
        if cls is None:
            import scapy.layers.all  # noqa: F401 - slow, so only for link types still unknown

            cls = conf.l2types.get(linktype)
    except Exception:  # scapy missing or broken: every such link type is unsupported
        cls = None
    _SCAPY_CLASSES[linktype] = cls
    return cls


def _dot11_macs(fc: int, layer: Any) -> tuple[str | None, str | None]:
    """(SA, DA) of an 802.11 frame: which address field holds them depends on ToDS/FromDS."""
    to_ds, from_ds = fc & 1, fc & 2
    if to_ds and from_ds:
        return layer.addr4, layer.addr3
    if to_ds:
        return layer.addr2, layer.addr3
    if from_ds:
        return layer.addr3, layer.addr1
    return layer.addr2, layer.addr1


def _scapy_ip(
    linktype: int, data: bytes, frame: int, sink: AnomalySink | None
) -> tuple[bytes, int, str | None, str | None] | None:
    """Let scapy strip an unusual link layer: (IP packet bytes, version, src MAC, dst MAC)."""
    cls = _scapy_class(linktype)
    if cls is None:
        _report_once(
            sink,
            ("unsupported-linktype", linktype),
            "unsupported-linktype",
            f"link type {linktype} is not supported; its packets are skipped",
            frame,
        )
        return None
    from scapy.layers.dot11 import Dot11
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.packet import NoPayload

    try:
        layer = cls(data)
        src_mac = dst_mac = None
        while not isinstance(layer, NoPayload):
            if isinstance(layer, IP | IPv6):
                return bytes(layer), (4 if isinstance(layer, IP) else 6), src_mac, dst_mac
            if isinstance(layer, Dot11):
                fc = int(layer.FCfield)
                if layer.type == 2 and fc & 0x40:  # protected data frame: nothing readable
                    _report(sink, "wifi-encrypted", "802.11 data frame is encrypted", frame)
                    return None
                src_mac, dst_mac = _dot11_macs(fc, layer)
            elif isinstance(layer, Ether):
                src_mac, dst_mac = layer.src, layer.dst
            layer = layer.payload
    except Exception as e:  # scapy raises anything on malformed input
        _report(sink, "link-decode-failed", f"link type {linktype}: {type(e).__name__}", frame)
    return None
