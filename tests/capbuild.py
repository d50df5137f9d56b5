"""Build small pcap / pcapng files and packets with struct, for reader and decoder tests.

Kept in one place so a hostile input in a test reads as what it is ("a pcapng whose EPB claims
more bytes than its block"), not as a wall of hex.
"""

from __future__ import annotations

import struct


def ipv4(
    payload: bytes,
    proto: int = 6,
    src: bytes = b"\x0a\x00\x00\x01",
    dst: bytes = b"\x0a\x00\x00\x02",
    total: int | None = None,
    frag: int = 0x4000,
    options: bytes = b"",
) -> bytes:
    ihl = (20 + len(options)) // 4
    length = 20 + len(options) + len(payload) if total is None else total
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, length, 1, frag, 64, proto, 0, src, dst)
    return hdr + options + payload


def ipv6(
    payload: bytes,
    nh: int = 6,
    src: bytes = b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x01",
    dst: bytes = b"\x20\x01\x0d\xb8" + b"\x00" * 11 + b"\x02",
    plen: int | None = None,
) -> bytes:
    length = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", 0x60000000, length, nh, 64, src, dst) + payload


def tcp(
    payload: bytes = b"",
    sport: int = 40000,
    dport: int = 80,
    seq: int = 1000,
    ack: int = 0,
    flags: int = 0x18,
    options: bytes = b"",
) -> bytes:
    doff = (20 + len(options)) // 4
    return (
        struct.pack("!HHIIBBHHH", sport, dport, seq, ack, doff << 4, flags, 65535, 0, 0) + options + payload
    )


def ether(
    payload: bytes,
    ethertype: int = 0x0800,
    dst: bytes = bytes.fromhex("0011223344aa"),
    src: bytes = bytes.fromhex("66778899aabb"),
    tags: tuple[int, ...] = (),
) -> bytes:
    out = dst + src
    for tpid in tags:
        out += struct.pack("!HH", tpid, 100)
    return out + struct.pack("!H", ethertype) + payload


def http_packet(n: int = 0) -> bytes:
    """An Ethernet/IPv4/TCP packet carrying a short HTTP line; n varies seq and text."""
    return ether(ipv4(tcp(b"GET /%d HTTP/1.1\r\n" % n, seq=1000 + 100 * n)))


# ---- classic pcap


def pcap_header(
    magic: int = 0xA1B2C3D4,
    major: int = 2,
    minor: int = 4,
    snaplen: int = 65535,
    linktype: int = 1,
    order: str = "<",
) -> bytes:
    return struct.pack(order + "IHHiIII", magic, major, minor, 0, 0, snaplen, linktype)


def pcap_record(
    data: bytes,
    sec: int = 1_700_000_000,
    frac: int = 0,
    caplen: int | None = None,
    wirelen: int | None = None,
    order: str = "<",
) -> bytes:
    cl = len(data) if caplen is None else caplen
    wl = len(data) if wirelen is None else wirelen
    return struct.pack(order + "IIII", sec, frac, cl, wl) + data


def pcap_file(packets: list[bytes], linktype: int = 1, order: str = "<") -> bytes:
    return pcap_header(linktype=linktype, order=order) + b"".join(
        pcap_record(p, frac=i, order=order) for i, p in enumerate(packets)
    )


# ---- pcapng


def _pad(b: bytes) -> bytes:
    return b + b"\x00" * (-len(b) % 4)


def option(code: int, value: bytes, order: str = "<") -> bytes:
    return struct.pack(order + "HH", code, len(value)) + _pad(value)


def block(
    btype: int, body: bytes, order: str = "<", length: int | None = None, trailer: int | None = None
) -> bytes:
    body = _pad(body)
    n = 12 + len(body) if length is None else length
    t = n if trailer is None else trailer
    return struct.pack(order + "II", btype, n) + body + struct.pack(order + "I", t)


def shb(order: str = "<", major: int = 1, minor: int = 0, options: bytes = b"") -> bytes:
    body = struct.pack(order + "IHHq", 0x1A2B3C4D, major, minor, -1) + options
    return block(0x0A0D0D0A, body, order)


def idb(linktype: int = 1, snaplen: int = 0, options: bytes = b"", order: str = "<") -> bytes:
    return block(1, struct.pack(order + "HHI", linktype, 0, snaplen) + options, order)


def epb(
    data: bytes,
    ifid: int = 0,
    ts: int = 1_700_000_000_000_000,
    caplen: int | None = None,
    wirelen: int | None = None,
    order: str = "<",
) -> bytes:
    cl = len(data) if caplen is None else caplen
    wl = len(data) if wirelen is None else wirelen
    body = struct.pack(order + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, cl, wl) + data
    return block(6, body, order)


def spb(data: bytes, wirelen: int | None = None, order: str = "<") -> bytes:
    return block(3, struct.pack(order + "I", len(data) if wirelen is None else wirelen) + data, order)


def pb(data: bytes, ifid: int = 0, ts: int = 1_700_000_000_000_000, order: str = "<") -> bytes:
    body = struct.pack(order + "HHIIII", ifid, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)) + data
    return block(2, body, order)


def pcapng_file(packets: list[bytes], linktype: int = 1) -> bytes:
    return (
        shb() + idb(linktype) + b"".join(epb(p, ts=1_700_000_000_000_000 + i) for i, p in enumerate(packets))
    )
