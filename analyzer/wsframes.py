"""A sans-I/O RFC 6455 frame decoder for the bytes one side sent after a 101.

Why not reuse websockets' parser: it raises on the first protocol error and reads whole frames
into memory (a header announcing 2^63 bytes is a MemoryError or `PayloadTooBig`). A diagnostic
needs the opposite: read past oddities and name them (anomalies on the `WsFrame`), and never hold
more than a bounded prefix of any payload, whatever the wire announces. So the decoder:

* keeps at most 14 header bytes plus `limits.max_frame_payload` bytes of the current payload;
  the rest of a long payload is counted and skipped as it arrives;
* inflates permessage-deflate data *as it arrives* (RFC 7692: raw deflate, `00 00 ff ff`
  appended at the end of each message), through `decompress(data, max_length)` so no message
  yields more than `limits.max_inflate_bytes` (a deflate bomb is cut, not expanded). Keeping the
  decompressor across messages gives context takeover; it is renewed per message when the
  sending side negotiated `*_no_context_takeover`;
* stops (`done`) after a Close frame, after `limits.max_frames` frames, or after a length it
  cannot trust (64-bit length with the MSB set), so work per connection is bounded.

Choices worth knowing:

* A frame is reported when its last byte arrives, with that `feed()` call's `ts_ns`/`frame`
  (where Wireshark shows a reassembled PDU). `finish()` reports a frame cut by the end of the
  capture, marked `truncated` with anomaly `incomplete-frame`.
* Fragmented compressed messages: every frame is reported as seen and carries the inflated
  bytes its own data produced (the final fragment also gets what the `00 00 ff ff` tail
  flushes). Joining the payloads of a message's frames gives the message, exactly as for
  uncompressed fragments. `inflated` is set on each frame of a compressed message.
* If inflating fails (`inflate-failed`) the frame keeps its raw (compressed) prefix and the rest
  of the message is not inflated. Context is then lost; a later message that refers back to it
  fails too (a fresh raw-deflate stream cannot resolve a back-reference, so it errors, it does
  not produce wrong text). The same happens after the inflate cap cut a message.
* A sender that ends a message with a BFINAL block ends the deflate stream; the next message
  gets a fresh decompressor.
* Close codes 5000 and above are reported as `invalid-close-code` (RFC 6455 §7.4.2 defines
  nothing above 4999; websockets and Autobahn reject them too).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from analyzer.limits import DEFAULT_LIMITS, Limits
from analyzer.model import Opcode, WsFrame

_TAIL = b"\x00\x00\xff\xff"
_KNOWN_OPCODES = frozenset(int(o) for o in Opcode)
_CONTROL = frozenset({Opcode.CLOSE, Opcode.PING, Opcode.PONG})
_DATA = frozenset({Opcode.TEXT, Opcode.BINARY})


@dataclass(frozen=True, slots=True)
class Deflate:
    """permessage-deflate parameters as the server accepted them in its 101 (RFC 7692 §7.1)."""

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15


def _window_bits(value: str) -> int:
    """A `*_max_window_bits` value; anything outside RFC 7692's 8..15 falls back to 15, the
    largest window, which inflates whatever a smaller one would (we diagnose, not enforce)."""
    value = value.strip().strip('"')
    if value.isascii() and value.isdigit() and 8 <= int(value) <= 15:  # not '¹²': int() refuses it
        return int(value)
    return 15


def negotiated_deflate(response_extensions: list[str]) -> Deflate | None:
    """The permessage-deflate the server accepted, from its `Sec-WebSocket-Extensions` values.

    None when it accepted none (then any RSV1 frame is an anomaly). Names and parameters are
    matched case-insensitively; only the first permessage-deflate counts, as a server may accept
    one configuration only.
    """
    for value in response_extensions:
        for ext in value.split(","):
            name, *params = (p.strip() for p in ext.split(";"))
            if name.lower() != "permessage-deflate":
                continue
            opts: dict[str, str] = {}
            for param in params:
                key, _, val = param.partition("=")
                opts.setdefault(key.strip().lower(), val)
            return Deflate(
                server_no_context_takeover="server_no_context_takeover" in opts,
                client_no_context_takeover="client_no_context_takeover" in opts,
                server_max_window_bits=_window_bits(opts.get("server_max_window_bits", "15")),
                client_max_window_bits=_window_bits(opts.get("client_max_window_bits", "15")),
            )
    return None


def _header_bytes(b1: int) -> int:
    """Bytes of a frame header whose second byte is `b1`: 2, the extended length, the mask key."""
    len7 = b1 & 0x7F
    return 2 + (2 if len7 == 126 else 8 if len7 == 127 else 0) + (4 if b1 & 0x80 else 0)


def _valid_close_code(code: int) -> bool:
    """RFC 6455 §7.4: codes a peer may put on the wire (1004-1006 and 1015 are local-only)."""
    return code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999


def _unmask(data: bytes | memoryview, key: bytes, offset: int) -> bytes:
    """XOR `data` with the mask, `offset` bytes into the payload; one big-int XOR, not a loop."""
    if not data:
        return b""
    r = offset % 4
    rotated = key[r:] + key[:r]
    n = len(data)
    stream = (rotated * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


@dataclass(slots=True)
class _Current:
    """The frame whose header has been read and whose payload is arriving."""

    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    masked: bool
    mask: bytes
    length: int
    anomalies: list[str]
    inflate: bool  # payload belongs to a compressed message and is being inflated
    whole_message: bool  # first and last frame of its message (so UTF-8 can be checked)
    received: int = 0
    raw: bytearray = field(default_factory=bytearray)
    plain: bytearray = field(default_factory=bytearray)
    plain_truncated: bool = False


class FrameDecoder:
    """Decodes the frames of one direction ("client" = client to server, or "server")."""

    def __init__(self, direction: str, deflate: Deflate | None, limits: Limits = DEFAULT_LIMITS) -> None:
        if direction not in ("client", "server"):
            raise ValueError(f"direction must be 'client' or 'server', not {direction!r}")
        self.direction = direction
        self.deflate = deflate
        self.limits = limits
        if deflate is None:
            self._wbits, self._no_takeover = 15, False
        elif direction == "client":
            self._wbits, self._no_takeover = (
                deflate.client_max_window_bits,
                deflate.client_no_context_takeover,
            )
        else:
            self._wbits, self._no_takeover = (
                deflate.server_max_window_bits,
                deflate.server_no_context_takeover,
            )
        self._head = bytearray()
        self._cur: _Current | None = None
        self._inflater: zlib._Decompress | None = None
        self._in_message = False  # a fragmented data message awaits continuation frames
        self._msg_compressed = False
        self._msg_out = 0  # bytes inflated so far in the current message
        self._msg_state = "ok"  # "ok", "capped" (hit max_inflate_bytes) or "failed"
        self._produced = 0
        self._stop_reason: str | None = None
        self._last_ts = 0
        self._last_frame: int | None = None
        self.ignored_bytes = 0  # bytes fed after `done`, counted so the caller can report them

    @property
    def done(self) -> bool:
        """True once nothing more will be decoded: further `feed()` data is only counted."""
        return self._stop_reason is not None

    @property
    def stop_reason(self) -> str | None:
        """Why decoding stopped: "close", "max-frames", "end" (after `finish()`) or the name of
        the fatal anomaly (e.g. "invalid-frame-length"); None while still decoding."""
        return self._stop_reason

    def feed(self, data: bytes, ts_ns: int, frame: int | None) -> list[WsFrame]:
        """Decode what `data` completes; `data` may split frames (and headers) anywhere."""
        if self.done:
            self.ignored_bytes += len(data)
            return []
        self._last_ts, self._last_frame = ts_ns, frame
        out: list[WsFrame] = []
        view = memoryview(data)
        pos, end = 0, len(data)
        while pos < end and not self.done:
            cur = self._cur
            if cur is None:
                take = min(self._head_size() - len(self._head), end - pos)
                self._head += view[pos : pos + take]
                pos += take
                if len(self._head) == self._head_size():
                    fatal = self._start_frame(ts_ns, frame)
                    if fatal is not None:
                        out.append(fatal)
                    elif self._cur is not None and self._cur.length == 0:
                        out.append(self._finish_frame(ts_ns, frame))
            else:
                take = min(cur.length - cur.received, end - pos)
                self._payload(cur, view[pos : pos + take])
                pos += take
                if cur.received == cur.length:
                    out.append(self._finish_frame(ts_ns, frame))
        if self.done:
            self.ignored_bytes += end - pos
        return out

    def finish(self) -> list[WsFrame]:
        """End of capture: report the frame still arriving (if its header was complete) as
        truncated with anomaly `incomplete-frame`, then stop. A partial header yields nothing."""
        out: list[WsFrame] = []
        cur = self._cur
        if cur is not None and not self.done:
            cur.anomalies.append("incomplete-frame")
            out.append(self._finish_frame(self._last_ts, self._last_frame, complete=False))
        if not self.done:
            self._stop_reason = "end"
        return out

    # -- header ------------------------------------------------------------------------------

    def _head_size(self) -> int:
        return 2 if len(self._head) < 2 else _header_bytes(self._head[1])

    def _start_frame(self, ts_ns: int, frame: int | None) -> WsFrame | None:
        """Parse the complete header in `_head`; returns a frame only for a fatal header."""
        h = bytes(self._head)
        self._head.clear()
        b0, b1 = h[0], h[1]
        fin, rsv1, rsv2, rsv3 = bool(b0 & 0x80), bool(b0 & 0x40), bool(b0 & 0x20), bool(b0 & 0x10)
        opcode, masked, len7 = b0 & 0x0F, bool(b1 & 0x80), b1 & 0x7F
        anomalies: list[str] = []
        if len7 == 126:
            length, off = int.from_bytes(h[2:4], "big"), 4
            if length < 126:
                anomalies.append("non-minimal-length")
        elif len7 == 127:
            length, off = int.from_bytes(h[2:10], "big"), 10
            if length >> 63:
                # RFC 6455 §5.2: the MSB must be 0. Nothing after this can be framed reliably.
                anomalies.append("invalid-frame-length")
                self._stop_reason = "invalid-frame-length"
                self._produced += 1
                return WsFrame(
                    self.direction,
                    ts_ns,
                    frame,
                    fin,
                    rsv1,
                    rsv2,
                    rsv3,
                    opcode,
                    masked,
                    length,
                    b"",
                    truncated=True,
                    anomalies=tuple(anomalies),
                )
            if length < 65536:
                anomalies.append("non-minimal-length")
        else:
            length, off = len7, 2
        mask = h[off : off + 4] if masked else b""

        if self.direction == "client" and not masked:
            anomalies.append("unmasked-client-frame")
        elif self.direction == "server" and masked:
            anomalies.append("masked-server-frame")
        if opcode not in _KNOWN_OPCODES:
            anomalies.append("reserved-opcode")
        if rsv2 or rsv3:
            anomalies.append("reserved-bits-set")
        if opcode in _CONTROL:
            if not fin:
                anomalies.append("fragmented-control-frame")
            if length > 125:
                anomalies.append("control-frame-too-long")

        inflate = False
        whole_message = False
        if rsv1:
            if self.deflate is None:
                anomalies.append("rsv1-without-extension")
            elif opcode in _CONTROL:
                anomalies.append("rsv1-on-control-frame")
            elif opcode == Opcode.CONTINUATION:
                anomalies.append("rsv1-on-continuation")
        if opcode in _DATA:
            if self._in_message:
                anomalies.append("expected-continuation")
                if self._msg_compressed:
                    self._inflater = None  # the abandoned message left the stream mid-way
            self._in_message = not fin
            self._msg_compressed = rsv1 and self.deflate is not None
            self._msg_out, self._msg_state = 0, "ok"
            inflate = self._msg_compressed
            whole_message = fin
        elif opcode == Opcode.CONTINUATION:
            if not self._in_message:
                anomalies.append("unexpected-continuation")
            else:
                inflate = self._msg_compressed
                self._in_message = not fin
        self._cur = _Current(
            fin, rsv1, rsv2, rsv3, opcode, masked, mask, length, anomalies, inflate, whole_message
        )
        return None

    # -- payload -----------------------------------------------------------------------------

    def _payload(self, cur: _Current, chunk: memoryview) -> None:
        """Take payload bytes: keep a bounded prefix, inflate if compressed, else only count
        (a view, so skipping a long payload copies nothing)."""
        keep = self.limits.max_frame_payload - len(cur.raw)
        if cur.inflate and self._msg_state == "ok":
            data = _unmask(chunk, cur.mask, cur.received) if cur.masked else bytes(chunk)
            if keep > 0:
                cur.raw += data[:keep]
            self._keep_plain(cur, self._inflate(data))
        elif keep > 0:
            part = bytes(chunk[:keep])
            cur.raw += _unmask(part, cur.mask, cur.received) if cur.masked else part
        cur.received += len(chunk)

    def _keep_plain(self, cur: _Current, data: bytes) -> None:
        room = self.limits.max_frame_payload - len(cur.plain)
        if len(data) > room:
            cur.plain_truncated = True
        if room > 0:
            cur.plain += data[:room]

    def _inflate(self, data: bytes) -> bytes:
        """Inflate within the message's output budget; on error or cap, stop for this message."""
        if self._msg_state != "ok" or not data:
            return b""
        room = self.limits.max_inflate_bytes - self._msg_out
        if room <= 0:  # note: decompress(max_length=0) would mean "unlimited"
            self._msg_state, self._inflater = "capped", None
            return b""
        if self._inflater is None:
            self._inflater = zlib.decompressobj(-self._wbits)
        try:
            out = self._inflater.decompress(data, room)
        except zlib.error:
            self._msg_state, self._inflater = "failed", None
            return b""
        self._msg_out += len(out)
        if self._inflater.unconsumed_tail:
            # Input left over means output exceeded the budget: cut, and the context is gone.
            self._msg_state, self._inflater = "capped", None
        return out

    def _finish_frame(self, ts_ns: int, frame: int | None, complete: bool = True) -> WsFrame:
        cur = self._cur
        assert cur is not None
        self._cur = None
        anomalies = cur.anomalies
        inflated = False
        if cur.inflate:
            if complete and cur.fin and self._msg_state == "ok":
                self._keep_plain(cur, self._inflate(_TAIL))
            if self._msg_state == "failed":
                anomalies.append("inflate-failed")
                payload, truncated = bytes(cur.raw), cur.length > len(cur.raw)
            else:
                payload, inflated = bytes(cur.plain), True
                truncated = cur.plain_truncated or self._msg_state == "capped" or not complete
            if cur.fin or not complete:
                ended_stream = self._inflater is not None and self._inflater.eof
                if self._no_takeover or ended_stream or self._msg_state != "ok" or not complete:
                    self._inflater = None
        else:
            payload, truncated = bytes(cur.raw), cur.length > len(cur.raw)

        close_code: int | None = None
        close_reason: str | None = None
        if cur.opcode == Opcode.CLOSE:
            if cur.length == 1:
                anomalies.append("bad-close-payload")
            elif len(payload) >= 2:
                close_code = int.from_bytes(payload[:2], "big")
                close_reason = payload[2:].decode("utf-8", "replace")
                if not _valid_close_code(close_code):
                    anomalies.append("invalid-close-code")
                if not truncated and not _is_utf8(payload[2:]):
                    anomalies.append("invalid-utf8")
        elif (
            cur.opcode == Opcode.TEXT
            and cur.whole_message
            and not truncated
            and (inflated or not cur.rsv1)  # still-compressed bytes are not text
            and not _is_utf8(payload)
        ):
            anomalies.append("invalid-utf8")

        self._produced += 1
        if cur.opcode == Opcode.CLOSE and complete:
            self._stop_reason = "close"
        elif self._produced >= self.limits.max_frames:
            self._stop_reason = "max-frames"
        return WsFrame(
            direction=self.direction,
            ts_ns=ts_ns,
            frame=frame,
            fin=cur.fin,
            rsv1=cur.rsv1,
            rsv2=cur.rsv2,
            rsv3=cur.rsv3,
            opcode=cur.opcode,
            masked=cur.masked,
            length=cur.length,
            payload=payload,
            truncated=truncated,
            inflated=inflated,
            close_code=close_code,
            close_reason=close_reason,
            anomalies=tuple(anomalies),
        )


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


MAX_RUN_FRAMES = 64  # frames looked at in one piece; a piece of more is not called a run


def is_frame_run(data: bytes, masked: bool) -> bool:
    """Whether `data` is one or more whole WebSocket frames, masked as `masked` says, ending
    exactly at its end. A connection captured mid-session whose segments read like this carries
    WebSocket frames, so no HTTP head will ever start in it; random bytes almost never do (a
    valid opcode, clear RSV2/RSV3, the right mask bit and lengths that add up to the segment)."""
    pos, end, frames = 0, len(data), 0
    while pos < end:
        frames += 1
        if frames > MAX_RUN_FRAMES or end - pos < 2:  # bounded work per piece
            return False
        b0, b1 = data[pos], data[pos + 1]
        opcode = b0 & 0x0F
        if b0 & 0x30 or opcode not in _KNOWN_OPCODES or bool(b1 & 0x80) != masked:
            return False
        length, size = b1 & 0x7F, _header_bytes(b1)
        if opcode >= Opcode.CLOSE and (not b0 & 0x80 or length > 125):
            return False
        if end - pos < size:
            return False
        if length >= 126:
            length = int.from_bytes(data[pos + 2 : pos + size - (4 if masked else 0)], "big")
        pos += size + length
    return pos == end > 0
