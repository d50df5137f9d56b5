"""Builds TCP `Segment`s of one connection for tests of the pure stages (no capture file needed)."""

from __future__ import annotations

from analyzer.model import Endpoint, Segment, TcpFlags

CLIENT = Endpoint("192.168.1.50", 51234)
SERVER = Endpoint("192.168.1.10", 8000)


class Wire:
    """A TCP connection whose segments are produced in the order the test writes them."""

    def __init__(
        self, client: Endpoint = CLIENT, server: Endpoint = SERVER, cisn: int = 1000, sisn: int = 5000
    ):
        self.client, self.server = client, server
        self.cseq, self.sseq = cisn, sisn
        self.frame = 0
        self.ts = 1_735_689_600_000_000_000
        self.segments: list[Segment] = []

    def _seg(self, from_client: bool, flags: int, payload: bytes = b"", seq: int | None = None) -> Segment:
        self.frame += 1
        self.ts += 1_000_000
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        my_seq = self.cseq if from_client else self.sseq
        ack = self.sseq if from_client else self.cseq
        seg = Segment(
            self.frame,
            self.ts,
            src,
            dst,
            my_seq if seq is None else seq,
            ack,
            flags,
            payload,
            "a0:b7:65:12:34:56" if from_client else "02:42:ac:11:00:02",
            "02:42:ac:11:00:02" if from_client else "a0:b7:65:12:34:56",
        )
        self.segments.append(seg)
        return seg

    def handshake(self) -> Wire:
        self._seg(True, TcpFlags.SYN)
        self.cseq += 1
        self._seg(False, TcpFlags.SYN | TcpFlags.ACK)
        self.sseq += 1
        self._seg(True, TcpFlags.ACK)
        return self

    def send(self, from_client: bool, data: bytes, *, sizes: list[int] | None = None) -> Wire:
        pos = 0
        for n in sizes or [len(data)]:
            chunk = data[pos : pos + n]
            self._seg(from_client, TcpFlags.ACK | TcpFlags.PSH, chunk)
            if from_client:
                self.cseq += len(chunk)
            else:
                self.sseq += len(chunk)
            pos += n
        if pos < len(data):
            self.send(from_client, data[pos:])
        return self

    def fin(self, from_client: bool) -> Wire:
        self._seg(from_client, TcpFlags.FIN | TcpFlags.ACK)
        if from_client:
            self.cseq += 1
        else:
            self.sseq += 1
        return self

    def rst(self, from_client: bool) -> Wire:
        self._seg(from_client, TcpFlags.RST | TcpFlags.ACK)
        return self
