"""Reads HTTP/1.x messages out of one reassembled direction of a connection, incrementally.

A sans-I/O state machine in the style of h11's connection: fed in-order stream pieces, it returns
complete messages (head + bounded body). It handles keep-alive (several messages), bodies framed by
Content-Length, chunked encoding or connection close, and stops at an upgrade, where the bytes that
follow belong to another protocol. Memory is bounded: heads up to `max_head_bytes`, bodies kept
up to `max_body_bytes` and skipped beyond.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from analyzer import http1
from analyzer.limits import DEFAULT_LIMITS, Limits

MAX_PENDING = 64  # request methods remembered for the answers still to come


class Mode(enum.Enum):
    SEEK = "seek"  # waiting for a piece that starts a message (stream start, or resync after a gap)
    HEAD = "head"
    BODY = "body"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until-close"
    HOLD = "hold"  # after an upgrade request: bytes wait until the answer says what they are
    STOPPED = "stopped"  # another protocol follows, or nothing more is wanted


@dataclass(frozen=True, slots=True)
class Message:
    head: http1.Head
    body: bytes
    body_truncated: bool
    ts_ns: int
    frames: tuple[int, ...]
    anomalies: tuple[str, ...]


class MessageReader:
    """One direction's HTTP message reader. `is_request` picks request or response parsing."""

    def __init__(self, is_request: bool, limits: Limits = DEFAULT_LIMITS) -> None:
        self.is_request = is_request
        self.limits = limits
        self.mode = Mode.SEEK
        self.buf = bytearray()
        self.frames: list[int] = []
        self._head: http1.Head | None = None
        self._head_ts = 0
        self._body = bytearray()
        self._body_truncated = False
        self._left = 0  # body bytes still to come (BODY) or left in the current chunk (CHUNKED)
        self._chunk_state = "size"  # size | data | crlf | trailer
        self._anomalies: list[str] = []
        self.anomalies: list[str] = []  # stream-level oddities (gaps inside heads, oversize heads)
        # request methods awaiting a response (HEAD, and a 2xx to CONNECT, have no body); the
        # request reader fills it, the response reader of the same connection shares it
        self.pending_methods: list[str] = []
        self.tunnel = False  # after a 2xx to CONNECT: what follows is the tunnel's own protocol
        self._unterminated = False  # the last look for a head end in `buf` found none
        self.partial: Message | None = None  # a head that never completed, parsed as far as it went

    def _flag(self, name: str) -> None:
        """Stream-level oddities are named once each: a stream of gaps must not grow the list."""
        if name not in self.anomalies:
            self.anomalies.append(name)

    def starts_message(self, data: bytes) -> bool:
        return http1.looks_like_request(data) if self.is_request else http1.looks_like_response(data)

    def feed(self, data: bytes, ts_ns: int, frame: int) -> list[Message]:
        if self.mode is Mode.STOPPED:
            return []
        if self.mode is Mode.SEEK:
            if not self.starts_message(data):
                return []
            self.mode = Mode.HEAD
        if self.mode is Mode.HEAD and not self.buf:
            if self.tunnel and not self.starts_message(data):
                self._reset(Mode.STOPPED)  # the tunnel carries TLS (wss://) or another protocol
                return []
            self._head_ts = ts_ns
        if frame and (not self.frames or self.frames[-1] != frame):
            self.frames.append(frame)
        if self.mode is Mode.HOLD:
            if len(self.buf) < self.limits.max_head_bytes:
                self.buf += data[: self.limits.max_head_bytes - len(self.buf)]
            return []
        self.buf += data
        return self._run(ts_ns, len(data))

    def gap(self, nbytes: int) -> None:
        """Bytes were not captured: a head in progress is lost; a body just gets shorter."""
        if self.mode in (Mode.HEAD, Mode.CHUNKED) and (self.buf or self.mode is Mode.CHUNKED):
            self._flag("gap-in-http-head" if self.mode is Mode.HEAD else "gap-in-http-body")
            self._reset(Mode.SEEK)
        elif self.mode is Mode.BODY:
            self._body_truncated = True
            self._left -= nbytes
            if self._left <= 0:
                self._reset(Mode.SEEK)
        elif self.mode is Mode.HEAD:
            self.mode = Mode.SEEK

    def release(self, tunnel: bool = False) -> bytes:
        """Leaves HOLD mode as HTTP again (the upgrade was refused, or a CONNECT tunnel opened,
        whose first bytes may be a request or TLS): returns held bytes to re-feed."""
        held = bytes(self.buf)
        self.buf.clear()
        self.mode = Mode.HEAD if tunnel else Mode.SEEK
        self.tunnel = self.tunnel or tunnel
        return held

    def stop(self) -> bytes:
        """The rest of this direction is not HTTP (an upgrade happened): returns the leftover bytes."""
        rest = bytes(self.buf)
        self.buf.clear()
        self.mode = Mode.STOPPED
        return rest

    def end(self) -> list[Message]:
        """The direction closed: a close-delimited body is complete; a partial head is reported."""
        out: list[Message] = []
        if self.mode is Mode.UNTIL_CLOSE or (self.mode is Mode.BODY and self._head is not None):
            if self.mode is Mode.BODY:
                self._body_truncated = True
            out.append(self._finish())
        elif self.mode is Mode.HEAD and self.buf:
            self._flag("http-head-incomplete")
            self._keep_partial(self._head_ts)
        self.mode = Mode.STOPPED
        return out

    def _keep_partial(self, ts_ns: int) -> None:
        """Keeps what arrived of a head that never ended (too large, or the stream closed first).

        A request the server answered (431, 400) or dropped before it was complete is still an
        attempt worth reporting; its header lines are parsed as far as they go.
        """
        raw = bytes(self.buf[: self.limits.max_head_bytes])
        cut = raw.rfind(b"\n")
        raw = raw[: cut + 1] if cut > 0 else raw
        parse = http1.parse_request_head if self.is_request else http1.parse_response_head
        head = parse(raw, self.limits.max_headers)
        self.partial = Message(
            head, b"", False, ts_ns, tuple(self.frames), (*head.anomalies, "head-incomplete")
        )

    def _run(self, ts_ns: int, appended: int = 0) -> list[Message]:
        out: list[Message] = []
        while self.buf:
            if self.mode is Mode.HEAD:
                # The bytes before this feed held no head end: look only at the new ones (and the
                # 3 before them), or 1-byte segments make every feed rescan the whole head.
                start = max(0, len(self.buf) - appended - 3) if self._unterminated else 0
                self._unterminated = False
                end = http1.find_head_end(self.buf, start)
                if end < 0:
                    self._unterminated = True
                    if len(self.buf) > self.limits.max_head_bytes:
                        self._flag("http-head-too-large")
                        self._keep_partial(ts_ns)
                        self._reset(Mode.STOPPED)
                    break
                self._start_body(bytes(self.buf[:end]), ts_ns)
                del self.buf[:end]
                if self.mode is Mode.HEAD:  # no body
                    out.append(self._finish())
                    if self.mode is not Mode.HEAD:
                        break
                continue
            if self.mode is Mode.BODY:
                take = min(self._left, len(self.buf))
                self._keep(self.buf[:take])
                del self.buf[:take]
                self._left -= take
                if self._left == 0:
                    out.append(self._finish())
                    if self.mode is not Mode.HEAD:
                        break
                continue
            if self.mode is Mode.CHUNKED:
                if not self._chunked_step():
                    break
                if self.mode is not Mode.CHUNKED:
                    out.append(self._finish())
                    if self.mode is not Mode.HEAD:
                        break
                continue
            if self.mode is Mode.UNTIL_CLOSE:
                self._keep(self.buf)
                self.buf.clear()
            break
        if self.mode is Mode.HEAD and len(self.buf) >= 11 and not self.starts_message(bytes(self.buf[:16])):
            if not self.tunnel:  # in a tunnel, TLS (wss://) is what follows, not an oddity
                self._flag("unexpected-bytes-between-messages")
            self._reset(Mode.STOPPED)
        return out

    def _start_body(self, raw: bytes, ts_ns: int) -> None:
        parse = http1.parse_request_head if self.is_request else http1.parse_response_head
        head = parse(raw, self.limits.max_headers)
        self._head, self._head_ts = head, ts_ns
        self._anomalies = list(head.anomalies)
        length, cl_anomalies = http1.content_length(head.headers)
        self._anomalies += cl_anomalies
        if self.is_request:
            if len(self.pending_methods) < MAX_PENDING:  # a client pipelining into a silent server
                self.pending_methods.append(head.start[0].upper())
            if http1.is_chunked(head.headers):
                self._begin_chunked()
            elif length:
                self._left, self.mode = length, Mode.BODY
            return
        status = http1.status_code(head)
        method = self.pending_methods[0] if self.pending_methods else "GET"
        if 100 <= status < 200 and status != 101:
            return  # interim answer: the real one follows
        if self.pending_methods:
            self.pending_methods.pop(0)
        if status in (101, 204, 304) or method == "HEAD":
            return
        if method == "CONNECT" and 200 <= status < 300:
            self.tunnel = True  # RFC 9110 §9.3.6: no body; the tunnel begins after the head
            return
        if http1.is_chunked(head.headers):
            self._begin_chunked()
        elif length is not None:
            if length:
                self._left, self.mode = length, Mode.BODY
        else:
            self.mode = Mode.UNTIL_CLOSE

    def _begin_chunked(self) -> None:
        self.mode, self._chunk_state, self._left = Mode.CHUNKED, "size", 0

    def _chunked_step(self) -> bool:
        """Consumes one chunked-encoding element from the buffer; False when more bytes are needed."""
        if self._chunk_state == "size":
            nl = self.buf.find(b"\n")
            if nl < 0:
                if len(self.buf) > 1024:
                    self._anomalies.append("bad-chunk-size")
                    self._reset(Mode.STOPPED)
                return False
            size_text = bytes(self.buf[:nl]).split(b";")[0].strip()
            del self.buf[: nl + 1]
            if (
                not size_text
                or len(size_text) > 15
                or any(c not in b"0123456789abcdefABCDEF" for c in size_text)
            ):
                self._anomalies.append("bad-chunk-size")
                self.mode = Mode.HEAD  # finish the message with what we have
                return True
            self._left = int(size_text, 16)
            self._chunk_state = "data" if self._left else "trailer"
            return True
        if self._chunk_state == "data":
            take = min(self._left, len(self.buf))
            self._keep(self.buf[:take])
            del self.buf[:take]
            self._left -= take
            if self._left:
                return False
            self._chunk_state = "crlf"
            return True
        if self._chunk_state == "crlf":
            nl = self.buf.find(b"\n")
            if nl < 0:
                return False
            del self.buf[: nl + 1]
            self._chunk_state = "size"
            return True
        nl = self.buf.find(b"\n")  # trailer section: lines until an empty one
        if nl < 0:
            return False
        line = bytes(self.buf[:nl]).strip()
        del self.buf[: nl + 1]
        if not line:
            self.mode = Mode.HEAD
        return True

    def _keep(self, data: bytes | bytearray) -> None:
        room = self.limits.max_body_bytes - len(self._body)
        if room > 0:
            self._body += data[:room]
        if len(data) > room:
            self._body_truncated = True

    def _finish(self) -> Message:
        assert self._head is not None
        msg = Message(
            self._head,
            bytes(self._body),
            self._body_truncated,
            self._head_ts,
            tuple(self.frames),
            tuple(self._anomalies),
        )
        self._reset(Mode.HEAD if self.mode is not Mode.STOPPED else Mode.STOPPED)
        self.frames = [self.frames[-1]] if self.buf and self.frames else []
        if self.is_request and (is_upgrade_request(msg.head) or msg.head.start[0].upper() == "CONNECT"):
            self.mode = Mode.HOLD  # what follows depends on the answer; keep it aside
        elif not self.is_request and http1.status_code(msg.head) == 101:
            self.mode = Mode.STOPPED  # the rest is the upgraded protocol; `stop()` hands it over
        return msg

    def _reset(self, mode: Mode) -> None:
        if mode is Mode.SEEK or mode is Mode.STOPPED:
            self.buf.clear()
        self.mode = mode
        self._head = None
        self._body = bytearray()
        self._body_truncated = False
        self._left = 0
        self._anomalies = []


def is_upgrade_request(head: http1.Head) -> bool:
    """An Upgrade header or an `upgrade` Connection token: the answer may switch protocols."""
    for name, value in head.headers:
        lname = name.lower()
        if lname == "upgrade" or (lname == "connection" and "upgrade" in value.lower()):
            return True
    return False
