"""Turn `Segment`s (e.g. from `tests.segments.Wire`) into a classic pcap file, for end-to-end
tests that run the real command line over a connection the test describes byte by byte."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable

from analyzer.model import Segment
from tests import capbuild

UPGRADE = (
    b"GET /xiaozhi/v1/ HTTP/1.1\r\n"
    b"Host: 192.168.1.10:8000\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)
ANSWER_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)
ANSWER_403 = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 9\r\nConnection: close\r\n\r\nForbidden"


def _mac(text: str | None, default: str) -> bytes:
    return bytes.fromhex((text or default).replace(":", ""))


def packet(seg: Segment) -> bytes:
    """Ethernet + IPv4 (or IPv6) + TCP bytes of one segment."""
    src, dst = ipaddress.ip_address(seg.src.ip), ipaddress.ip_address(seg.dst.ip)
    tcp = capbuild.tcp(
        seg.payload, seg.src.port, seg.dst.port, seg.seq % (1 << 32), seg.ack % (1 << 32), seg.flags
    )
    if src.version == 6:
        ip, ethertype = capbuild.ipv6(tcp, src=src.packed, dst=dst.packed), 0x86DD
    else:
        ip, ethertype = capbuild.ipv4(tcp, src=src.packed, dst=dst.packed), 0x0800
    return capbuild.ether(
        ip, ethertype, dst=_mac(seg.dst_mac, "020000000002"), src=_mac(seg.src_mac, "020000000001")
    )


def pcap_bytes(segments: Iterable[Segment], linktype: int = 1) -> bytes:
    """A little-endian microsecond pcap holding the segments, timestamps from `ts_ns`."""
    out = [capbuild.pcap_header(snaplen=262_144, linktype=linktype)]
    for seg in segments:
        data = packet(seg)
        sec, usec = divmod(seg.ts_ns // 1000, 1_000_000)
        out.append(struct.pack("<IIII", sec, usec, len(data), len(data)) + data)
    return b"".join(out)
