"""One TCP connection at a time: who is the client, what each side spoke, and the upgrade attempts.

`Conversation` is sans-I/O: fed `Segment`s of one connection, it reassembles both directions
(`tcp.StreamReassembler`), reads HTTP out of them (`http_stream.MessageReader`), pairs requests
with answers, decodes the WebSocket frames after a 101 (`wsframes.FrameDecoder`), and finally
yields `Handshake`s and `OtaExchange`s. It keeps the wire truth (header order, casing, duplicates,
gaps) and bounds everything it keeps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from analyzer import http1, tlsinfo
from analyzer.http_stream import Message, MessageReader, Mode, is_upgrade_request
from analyzer.limits import DEFAULT_LIMITS, Limits
from analyzer.model import (
    Anomaly,
    Endpoint,
    Handshake,
    HttpRequest,
    HttpResponse,
    OtaExchange,
    Payload,
    Segment,
    TcpFlags,
    Transport,
    WsFrame,
)
from analyzer.sources.decode import AnomalyLog
from analyzer.tcp import Piece, StreamReassembler
from analyzer.tls.records import TlsReader
from analyzer.tls.session import details as tls_details
from analyzer.tls.session import handshake_failed as tls_handshake_failed
from analyzer.wsframes import FrameDecoder, is_frame_run, negotiated_deflate

SETTLE_NS = 5_000_000_000  # after an answer, capture time we wait for frames/close before reporting
MAX_ATTEMPTS = 64  # upgrade attempts kept per connection
MAX_UNANSWERED = 1024  # pipelined requests awaiting an answer, per connection
# Whole-WebSocket-frame pieces after which a direction captured mid-session stops being searched
# for an HTTP head (random bytes pass `is_frame_run` about once in thousands of pieces)
MIDSTREAM_FRAME_RUNS = 2
# Plain ints for the per-packet tests: `int & IntFlag` goes through enum's __rand__ (~1 us each)
_FIN, _SYN, _RST, _ACK = int(TcpFlags.FIN), int(TcpFlags.SYN), int(TcpFlags.RST), int(TcpFlags.ACK)


def is_attempt(req: HttpRequest) -> bool:
    """Is this request a WebSocket (or other upgrade) attempt? Decided by content, never by port.

    Broken attempts are what we diagnose, so anything that smells of one counts: an Upgrade header,
    a Sec-WebSocket-* header, an `upgrade` Connection token, or a GET carrying the xiaozhi identity
    headers or path (a proxy may have stripped the upgrade headers on the way).
    """
    for name, value in req.headers:
        lname = name.lower()
        if lname == "upgrade" or lname.startswith("sec-websocket-"):
            return True
        if lname == "connection" and "upgrade" in value.lower():
            return True
    if req.method.upper() == "GET":
        if req.target.startswith("/xiaozhi/v1") or "/xiaozhi/v1" in req.target[:200]:
            return True
        names = {n.lower() for n, _ in req.headers}
        if "device-id" in names and "protocol-version" in names:
            return True
    return False


def _too_short_to_tell(data: bytes, from_client: bool) -> bool:
    """Fewer bytes than a request line's method (or `HTTP/`) and a prefix of one."""
    if len(data) >= 9:
        return False
    if from_client:
        upper = data.upper()
        return any((m + b" ").startswith(upper) for m in http1.METHODS)
    return b"HTTP/".startswith(data)


# What WebSocket servers answer a plain GET with (Tornado, aiohttp, Go's gorilla, websockets)
_ENDPOINT_TEXTS = (
    b'can "upgrade" only to "websocket"',
    b"no websocket upgrade hdr",
    b"the client is not using the websocket protocol",
    b"failed to open a websocket connection",
)


def says_websocket_endpoint(resp: HttpResponse) -> bool:
    """Does this answer to a plain request say that the URL is a WebSocket endpoint?"""
    if resp.status == 426 or "websocket" in (resp.header("upgrade") or "").lower():
        return True
    if resp.status >= 400 and resp.headers_named("sec-websocket-version"):
        return True  # the versions it speaks (RFC 6455 §4.4): gorilla sends it on every refusal
    body = resp.body[:512].lower()
    return resp.status >= 400 and any(text in body for text in _ENDPOINT_TEXTS)


def promoted_by_answer(req: HttpRequest, resp: HttpResponse) -> bool:
    """Is this plain GET an attempt after all? Its answer shows a WebSocket endpoint (curl, or a
    proxy that stripped the upgrade headers), and it is not a browser's page or image request
    (favicon.ico) that happened to hit the endpoint."""
    fetched_as = (req.header("sec-fetch-dest") or "websocket").strip().lower()
    return req.method.upper() == "GET" and fetched_as == "websocket" and says_websocket_endpoint(resp)


def connect_answer(req: HttpRequest, status: int) -> tuple[bool, str | None]:
    """What an answer to CONNECT means: (drop the CONNECT attempt, the tunnel it opened). A 2xx
    opens the tunnel and the request sent through it is the attempt; a refusal stays one, unless
    the tunnel was to 443 (HTTPS browsing through the proxy, nothing of ours)."""
    opened = 200 <= status < 300
    return opened or req.target.rpartition(":")[2] == "443", req.target[:255] if opened else None


def is_ota(req: HttpRequest) -> bool:
    return "/ota" in req.target.lower().split("?")[0]


@dataclass(slots=True)
class _Side:
    stream: StreamReassembler
    syn: bool = False
    fin: bool = False
    rst: bool = False
    nbytes: int = 0
    payload: Payload = Payload.NONE
    mac: str | None = None
    tls: TlsReader | None = None  # this side spoke TLS: its cleartext handshake (analyzer.tls)
    seek_budget: int = 64  # mid-stream pieces we look at for the start of an HTTP message
    frame_runs: int = 0  # mid-stream pieces that were whole WebSocket frames
    bad_checksums: int = 0  # segments read for their bytes whose TCP checksum was wrong
    undecided: bytearray = field(default_factory=bytearray)  # first bytes, too few to classify yet
    undecided_at: Piece | None = None  # the piece that brought the first of them


@dataclass(slots=True)
class _Attempt:
    request: HttpRequest | None
    response: HttpResponse | None = None
    frames: list[WsFrame] = field(default_factory=list)
    answered_ns: int = 0
    ota: bool = False
    done: bool = False
    tunnel: str | None = None  # sent inside a CONNECT tunnel to this authority
    shadow: bool = False  # a plain GET: an attempt only if its answer shows a WebSocket endpoint


class Conversation:
    """All we track for one TCP connection (one `tcp.stream`)."""

    def __init__(self, tcp_stream: int, first: Segment, limits: Limits = DEFAULT_LIMITS) -> None:
        self.tcp_stream = tcp_stream
        self.limits = limits
        self.a, self.b = first.src, first.dst
        self.sides = {
            first.src: _Side(StreamReassembler(limits.max_ooo_bytes, limits.max_ooo_segments)),
            first.dst: _Side(StreamReassembler(limits.max_ooo_bytes, limits.max_ooo_segments)),
        }
        self.client: Endpoint | None = None
        self.first_ns = first.ts_ns
        self.last_ns = first.ts_ns
        self.last_data_ns = 0  # the last segment with payload, either way (fast path keeps it too)
        self.closed_ns = 0  # the first FIN or RST, and who sent it
        self.closed_by: Endpoint | None = None
        self.syn_seq: int | None = None
        self.syn_retries = 0
        self.closed = False
        self.requests = MessageReader(True, limits)
        self.responses = MessageReader(False, limits)
        self.responses.pending_methods = self.requests.pending_methods  # HEAD/CONNECT answers
        self.tunnel: str | None = None  # the CONNECT authority, once a proxy opened the tunnel
        self.attempts: list[_Attempt] = []
        # FIFO of requests awaiting answers, bounded: a pipelining client the server never answers
        # must not grow it without end (the oldest are dropped, and that is said)
        self.unanswered: deque[_Attempt | None] = deque(maxlen=MAX_UNANSWERED)
        self.decoders: dict[str, FrameDecoder] = {}
        self.anomalies: list[Anomaly] = []
        self._note = AnomalyLog(self.anomalies, limits)  # per name: 25 samples, then counted
        self.upgraded = False

    # ---- feeding -------------------------------------------------------------------------

    def feed(self, seg: Segment) -> None:
        self.last_ns = max(self.last_ns, seg.ts_ns)
        side, peer = self.sides[seg.src], self.sides[seg.dst]
        if seg.src_mac and side.mac is None:
            side.mac = seg.src_mac
        flags = seg.flags
        if flags & (_FIN | _RST) and self.closed_by is None:
            self.closed_ns, self.closed_by = seg.ts_ns, seg.src
        if flags & _SYN:
            self._syn(seg, side)
        if flags & _RST:
            side.rst = True
        if seg.payload:
            if seg.ts_ns > self.last_data_ns:
                self.last_data_ns = seg.ts_ns
            # counted only where the bytes are read (never on a discarded stream, whose packets
            # the fast path skips unseen): a capture taken on a host with checksum offload shows
            # its own outgoing packets with wrong checksums, so this is a count, never a verdict
            if seg.checksum_ok is False and not side.stream.discard:
                side.bad_checksums += 1
            if self.client is None:
                self._guess_roles(seg)
            for piece in side.stream.feed(seg.seq, seg.payload, seg.ts_ns, seg.frame):
                self._piece(seg.src, piece)
        if flags & _ACK and peer.stream.started and not peer.stream.discard:
            for piece in peer.stream.acked(seg.ack):
                self._piece(seg.dst, piece)
        if flags & _FIN and not side.fin:
            side.fin = True
            side.stream.fin(seg.seq, len(seg.payload))
            self._end_direction(seg.src)

    @property
    def closed_both(self) -> bool:
        a, b = self.sides[self.a], self.sides[self.b]
        return (a.fin and b.fin) or a.rst or b.rst

    def wants_new_stream(self, seg: Segment) -> bool:
        """A fresh SYN on a finished connection (port reuse) starts a new `tcp.stream`, like tshark."""
        syn_only = seg.flags & (_SYN | _ACK) == _SYN
        if not syn_only:
            return False
        if self.closed_both:
            return True
        return self.syn_seq is not None and seg.seq != self.syn_seq and self._has_data()

    def _has_data(self) -> bool:
        return any(s.nbytes for s in self.sides.values())

    def _syn(self, seg: Segment, side: _Side) -> None:
        if not seg.flags & _ACK:
            if side.syn and self.syn_seq == seg.seq:
                self.syn_retries += 1
            self.syn_seq = seg.seq
            if self.client is None:
                self.client = seg.src
        elif self.client is None:
            self.client = seg.dst
        side.syn = True
        side.stream.syn(seg.seq)

    def _guess_roles(self, seg: Segment) -> None:
        """No SYN seen: the side that sends a request (or ClientHello) is the client."""
        data = seg.payload
        if http1.looks_like_request(data) or (tlsinfo.is_tls_record(data) and data[5:6] == b"\x01"):
            self.client = seg.src
        elif http1.looks_like_response(data) or (tlsinfo.is_tls_record(data) and data[5:6] == b"\x02"):
            self.client = seg.dst
        else:
            self.client = seg.src if seg.src.port > seg.dst.port else seg.dst

    def _piece(self, src: Endpoint, piece: Piece) -> None:
        from_client = src == self.client
        side = self.sides[src]
        if piece.gap:
            self._gap(from_client, piece.gap, piece.frame)
        if not piece.data:
            return
        if side.payload is Payload.NONE:
            if side.undecided or _too_short_to_tell(piece.data, from_client):
                piece = self._undecided(side, piece, from_client)
                if not piece.data:
                    return
            side.payload = self._classify(piece.data, from_client)
            if side.payload is Payload.TLS:
                side.tls = TlsReader(client=from_client)
        if side.tls is not None and not side.tls.done:
            side.tls.feed(piece.data, piece.frame)
        side.nbytes += len(piece.data)
        decoder = self.decoders.get("client" if from_client else "server")
        if decoder is not None:
            self._frames(decoder, piece.data, piece.ts_ns, piece.frame)
            return
        reader = self.requests if from_client else self.responses
        if side.payload is Payload.OTHER and not side.syn and side.seek_budget > 0:
            side.seek_budget -= 1  # captured mid-stream: a later segment may start a message
            if reader.starts_message(piece.data):
                side.payload = Payload.HTTP
            elif is_frame_run(piece.data, masked=from_client):
                side.frame_runs += 1
                if side.frame_runs >= MIDSTREAM_FRAME_RUNS:  # a WebSocket session: never HTTP again
                    side.seek_budget = 0
        if side.payload is not Payload.HTTP:
            if side.tls is not None:
                if side.tls.done:  # what follows is encrypted: the fast path may skip it
                    side.stream.discard = True
            elif side.syn or side.seek_budget <= 0:  # nothing here will ever be HTTP
                side.stream.discard = True
            return
        for msg in reader.feed(piece.data, piece.ts_ns, piece.frame):
            self._message(from_client, msg)
        if reader.mode is Mode.STOPPED and not self.decoders:
            side.stream.discard = True

    @staticmethod
    def _undecided(side: _Side, piece: Piece, from_client: bool) -> Piece:
        """Holds the first bytes of a direction until they say what protocol they are.

        A client may write `GET` alone and the rest of the request line later; deciding on the
        first three bytes would lose the request. Returns the held bytes once they suffice (or an
        empty piece while they do not).
        """
        if not side.undecided:
            side.undecided_at = piece
        side.undecided += piece.data
        if _too_short_to_tell(bytes(side.undecided), from_client):
            return Piece(piece.offset, b"", piece.ts_ns, piece.frame)
        first = side.undecided_at or piece
        data, side.undecided, side.undecided_at = bytes(side.undecided), bytearray(), None
        return Piece(first.offset, data, first.ts_ns, first.frame)

    @staticmethod
    def _classify(data: bytes, from_client: bool) -> Payload:
        if http1.looks_like_request(data) if from_client else http1.looks_like_response(data):
            return Payload.HTTP
        if tlsinfo.is_tls_record(data):
            return Payload.TLS
        return Payload.OTHER

    def _gap(self, from_client: bool, nbytes: int, frame: int) -> None:
        self._note(Anomaly("content-gap", f"{nbytes} bytes not captured", frame or None))
        decoder = self.decoders.get("client" if from_client else "server")
        if decoder is not None:
            self.decoders.pop("client" if from_client else "server")
            self._note(Anomaly("gap-in-websocket-frames", "", frame or None))
            return
        (self.requests if from_client else self.responses).gap(nbytes)

    def _end_direction(self, src: Endpoint) -> None:
        side = self.sides[src]
        for piece in side.stream.flush():
            self._piece(src, piece)
        if side.payload is Payload.HTTP:
            from_client = src == self.client
            reader = self.requests if from_client else self.responses
            for msg in reader.end():
                self._message(from_client, msg)

    # ---- HTTP messages ---------------------------------------------------------------------

    def _message(self, from_client: bool, msg: Message) -> None:
        if from_client:
            self._request(msg)
        else:
            self._response(msg)

    def _request(self, msg: Message) -> None:
        method, target, version = msg.head.start
        req = HttpRequest(
            method,
            target,
            version,
            msg.head.headers,
            msg.body,
            msg.body_truncated,
            msg.ts_ns,
            msg.frames,
            msg.anomalies,
        )
        attempt: _Attempt | None = None
        connect = req.method.upper() == "CONNECT"
        if (connect or is_attempt(req) or is_ota(req)) and len(self.attempts) < MAX_ATTEMPTS:
            attempt = _Attempt(req, ota=is_ota(req) and not is_attempt(req), tunnel=self.tunnel)
            self.attempts.append(attempt)
        elif req.method.upper() == "GET":
            attempt = _Attempt(req, tunnel=self.tunnel, shadow=True)
        if len(self.unanswered) == MAX_UNANSWERED and self._note.once("too-many-unanswered-requests"):
            self._note(
                Anomaly("too-many-unanswered-requests", f"over {MAX_UNANSWERED} requests without an answer")
            )
        self.unanswered.append(attempt)

    def _response(self, msg: Message) -> None:
        version, _, reason = msg.head.start
        status = http1.status_code(msg.head)
        if 100 <= status < 200 and status != 101:
            return
        resp = HttpResponse(
            version,
            status,
            reason,
            msg.head.headers,
            msg.body,
            msg.body_truncated,
            msg.ts_ns,
            msg.frames,
            msg.anomalies,
        )
        if not self.unanswered and self.requests.partial is not None:
            self._partial_request()  # answered before the request was complete (e.g. 431, 400)
        if self.unanswered:
            attempt = self.unanswered.popleft()
            if attempt is not None and attempt.shadow:
                attempt = self._promoted(attempt, resp)
        elif (status == 101 or self._client_spoke_tls()) and len(self.attempts) < MAX_ATTEMPTS:
            # a 101 whose request was before the capture began, or HTTP answering a ClientHello
            attempt = _Attempt(None)
            self.attempts.append(attempt)
        else:
            attempt = None
        if attempt is not None:
            attempt.response = resp
            attempt.answered_ns = msg.ts_ns
        opened = attempt is not None and self._tunnel_answer(attempt, status)
        if status == 101:
            self._upgrade(resp)
        elif self.requests.mode is Mode.HOLD:
            for m in self._refeed_held(tunnel=opened):
                self._request(m)

    def _partial_request(self) -> None:
        msg, self.requests.partial = self.requests.partial, None
        if msg is not None and msg.head.start[0]:
            self._request(msg)

    def _client_spoke_tls(self) -> bool:
        return self.client is not None and self.sides[self.client].payload is Payload.TLS

    def _promoted(self, attempt: _Attempt, resp: HttpResponse) -> _Attempt | None:
        """The shadow attempt of a plain GET, if its answer makes it one (`promoted_by_answer`)."""
        if attempt.request is None or not promoted_by_answer(attempt.request, resp):
            return None
        if len(self.attempts) >= MAX_ATTEMPTS:
            return None
        attempt.shadow = False
        self.attempts.append(attempt)
        return attempt

    def _tunnel_answer(self, attempt: _Attempt, status: int) -> bool:
        """Applies `connect_answer` to a CONNECT attempt; True when the tunnel opened."""
        req = attempt.request
        if req is None or req.method.upper() != "CONNECT":
            return False
        drop, tunnel = connect_answer(req, status)
        if drop:
            self.attempts = [a for a in self.attempts if a is not attempt]
        if tunnel is not None:
            self.tunnel = tunnel
        return tunnel is not None

    def _refeed_held(self, tunnel: bool = False) -> list[Message]:
        held = self.requests.release(tunnel)
        return self.requests.feed(held, self.last_ns, 0) if held else []

    def _upgrade(self, resp: HttpResponse) -> None:
        """After a 101 both directions carry WebSocket frames (if it was a WebSocket upgrade)."""
        self.upgraded = True
        server_rest = self.responses.stop()
        client_rest = self.requests.stop()
        asked = next((a.request for a in reversed(self.attempts) if a.response is resp and a.request), None)
        offered = resp.header("upgrade") or (asked.header("upgrade") if asked else None) or ""
        is_ws = offered.strip().lower() == "websocket"
        if not is_ws:
            for s in self.sides.values():
                s.stream.discard = True
            return
        deflate = negotiated_deflate(resp.headers_named("sec-websocket-extensions"))
        self.decoders = {
            "client": FrameDecoder("client", deflate, self.limits),
            "server": FrameDecoder("server", deflate, self.limits),
        }
        if server_rest:
            self._frames(
                self.decoders["server"], server_rest, resp.ts_ns, resp.frames[-1] if resp.frames else 0
            )
        if client_rest:
            self._frames(self.decoders["client"], client_rest, resp.ts_ns, 0)

    def _frames(self, decoder: FrameDecoder, data: bytes, ts_ns: int, frame: int) -> None:
        self._attach_frames(decoder.feed(data, ts_ns, frame or None))
        if decoder.done:
            client = self.client or self.a
            side = self.sides[client if decoder is self.decoders.get("client") else self._server()]
            side.stream.discard = True

    def _attach_frames(self, frames: list[WsFrame]) -> None:
        target = next((a for a in reversed(self.attempts) if a.response and a.response.status == 101), None)
        if target is not None:
            target.frames.extend(frames)

    def _server(self) -> Endpoint:
        return self.b if self.client == self.a else self.a

    def roles(self) -> tuple[Endpoint, Endpoint]:
        """(client, server), as far as they are known (else the first sender is the client)."""
        return (self.client, self._server()) if self.client else (self.a, self.b)

    # ---- results ---------------------------------------------------------------------------

    def transport(self) -> Transport:
        client, server = self.roles()
        c, s = self.sides[client], self.sides[server]
        alert, alert_by = None, None  # the first plaintext alert, the server's before the client's
        for who, reader in (("server", s.tls), ("client", c.tls)):
            if reader is not None and reader.alerts:
                alert, alert_by = reader.alerts[0][:2], who
                break
        return Transport(
            syn=c.syn,
            syn_ack=s.syn,
            client_fin=c.fin,
            server_fin=s.fin,
            client_rst=c.rst,
            server_rst=s.rst,
            midstream=not (c.syn or s.syn),
            client_payload=c.payload,
            server_payload=s.payload,
            client_bytes=c.stream.next_offset,
            server_bytes=s.stream.next_offset,
            first_ns=self.first_ns,
            last_ns=self.last_ns,
            syn_retries=self.syn_retries,
            gaps=c.stream.gaps + s.stream.gaps,
            client_bad_checksums=c.bad_checksums,
            server_bad_checksums=s.bad_checksums,
            last_data_ns=self.last_data_ns,
            closed_ns=self.closed_ns,
            closed_by=None if self.closed_by is None else "client" if self.closed_by == client else "server",
            tls_server_hello=s.tls is not None and s.tls.server_hello is not None,
            tls_alert=alert,
            tls_alert_by=alert_by,
            tls_sni=c.tls.client_hello.sni if c.tls is not None and c.tls.client_hello else None,
            tls=tls_details(c.tls, s.tls) if c.tls is not None else None,
        )

    @property
    def answered_ns(self) -> int:
        """When the first answer came (the last activity if none did)."""
        return min((a.answered_ns for a in self.attempts if a.response is not None), default=self.last_ns)

    def ready(self, now_ns: int) -> bool:
        """Can this connection's attempts be reported now (live mode reports before the end)?

        An answered attempt waits `SETTLE_NS` even when the connection closed at once: the
        frames and close that follow are part of its story, and the legs of an attempt through a
        proxy are then reported in the order they were answered (see `ConnectionTable`)."""
        if not self.attempts:
            return self.closed_both
        if self.closed_both and any(a.response is None for a in self.attempts):
            return True  # nothing more will come
        return all(a.response is not None and now_ns - a.answered_ns > SETTLE_NS for a in self.attempts)

    def finish(self) -> tuple[list[Handshake], list[OtaExchange], Transport]:
        """Flushes both directions and builds the results. Call once, when the connection is done."""
        for ep in (self.a, self.b):
            side = self.sides[ep]
            for piece in side.stream.flush():
                self._piece(ep, piece)
            if side.undecided and side.undecided_at is not None:  # the stream ended that short
                held, side.undecided, side.undecided_at = bytes(side.undecided), bytearray(), None
                side.payload = self._classify(held, ep == self.client)
            if not side.fin and side.payload is Payload.HTTP:
                from_client = ep == self.client
                reader = self.requests if from_client else self.responses
                if reader.mode is Mode.UNTIL_CLOSE or (reader.mode is Mode.HEAD and reader.buf):
                    for msg in reader.end():
                        self._message(from_client, msg)
        if self.requests.partial is not None:  # the connection ended while the request was incomplete
            self._partial_request()
        for direction, decoder in self.decoders.items():
            leftovers = decoder.finish()
            if leftovers:
                self._attach_frames(leftovers)
            if decoder.stop_reason == "max-frames" and decoder.ignored_bytes:
                self._note(Anomaly("websocket-frame-limit", f"{direction}: later frames not decoded"))
        transport = self.transport()
        client, server = self.roles()
        anomalies = self._anomalies(client, server)
        handshakes: list[Handshake] = []
        otas: list[OtaExchange] = []
        for att in self.attempts:
            if att.ota and att.request is not None:
                otas.append(
                    OtaExchange(
                        self.tcp_stream, client, server, att.request, att.response, self.sides[client].mac
                    )
                )
                continue
            handshakes.append(
                Handshake(
                    self.tcp_stream,
                    client,
                    server,
                    transport,
                    att.request,
                    att.response,
                    tuple(sorted(att.frames, key=lambda f: f.ts_ns)),
                    self.sides[client].mac,
                    self.sides[server].mac,
                    anomalies,
                    att.tunnel,
                )
            )
        if not handshakes and self._failed_without_http(transport):
            handshakes.append(
                Handshake(
                    self.tcp_stream,
                    client,
                    server,
                    transport,
                    None,
                    None,
                    (),
                    self.sides[client].mac,
                    self.sides[server].mac,
                    anomalies,
                )
            )
        return handshakes, otas, transport

    def _failed_without_http(self, t: Transport) -> bool:
        """A connection that never carried HTTP but failed in a way worth naming (TLS or TCP)."""
        if t.client_payload is Payload.TLS:
            return not t.tls_server_hello or (t.tls is not None and tls_handshake_failed(t.tls))
        return t.client_payload is Payload.NONE and t.syn and (not t.syn_ack or t.server_rst)

    def _anomalies(self, client: Endpoint, server: Endpoint) -> tuple[Anomaly, ...]:
        out = list(self.anomalies)
        for ep, who in ((client, "client"), (server, "server")):
            side = self.sides[ep]
            for name in dict.fromkeys(side.stream.anomalies):
                out.append(Anomaly(name, f"{who} to {'server' if who == 'client' else 'client'}"))
        for name in dict.fromkeys(self.requests.anomalies + self.responses.anomalies):
            out.append(Anomaly(name))
        return tuple(out)  # bounded: `_note` keeps 25 per name and counts the rest; names are few


__all__ = [
    "Conversation",
    "connect_answer",
    "is_attempt",
    "is_ota",
    "is_upgrade_request",
    "promoted_by_answer",
    "says_websocket_endpoint",
]
