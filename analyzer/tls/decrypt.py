"""`--keylog`: TLS decrypted by tshark, then read by *our* handshake model like plaintext.

tshark (with `tls.keylog_file`, or keys embedded in the pcapng) gives, per frame, the decrypted
application bytes of each TLS record (`data.data`, with HTTP/HTTP2 dissection switched off so
nothing else claims them). Each TLS stream's decrypted bytes become synthetic `Segment`s — the
real frame numbers and timestamps, sequence numbers counted from a synthetic SYN — fed to a
`Conversation`, so the HTTP reader, frame decoder and every rule are the same ones plaintext
goes through: a 403 from nginx behind TLS is diagnosed exactly like one on plain TCP.

The handshake keeps its real TCP facts (SYN, FIN, RST, times) and TLS facts from our own pass
over the capture; only what was inside TLS (payload kinds, byte counts) comes from the inside.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field

from analyzer.errors import CaptureError
from analyzer.handshake import Conversation
from analyzer.http_stream import Message
from analyzer.limits import Limits
from analyzer.model import Anomaly, Endpoint, InputSummary, Segment, TcpFlags, TlsAlert, TlsDetails, Transport
from analyzer.pipeline import ConnectionTable, Harvest
from analyzer.sources import tshark

DISABLE = ("http", "http2", "websocket", "spdy")
MAX_DECODE_AS = 64  # server ports forced to TLS on tshark's command line
FIELDS = [
    *tshark.BASE_FIELDS,
    "tls.handshake.type",
    "tls.alert_message.level",
    "tls.alert_message.desc",
    "tls.handshake.certificate",
    "data.data",
]
MAX_CERTS = 8  # of a server's chain, read from its decrypted Certificate message
CERTIFICATE_REQUEST = 13  # TLS handshake message type


class TransportTable(ConnectionTable):
    """A ConnectionTable that also remembers every finished connection's `Transport` by stream.

    Successful TLS sessions yield no `Handshake` without keys, yet their TLS facts are what a
    decrypted handshake must carry, so they are kept here (a few hundred bytes each).
    """

    def __init__(self, limits: Limits) -> None:
        super().__init__(limits)
        self.transports: dict[int, Transport] = {}
        self.tls_ports: set[int] = set()  # server ports that answered a ClientHello

    def _done(self, key: tuple[str, int, str, int]) -> None:
        conv = self.table[key]
        super()._done(key)
        t = conv.transport()
        if t.tls is not None:
            self.transports[conv.tcp_stream] = t
            if t.tls_server_hello and len(self.tls_ports) < MAX_DECODE_AS:
                self.tls_ports.add(conv.roles()[1].port)


class DecryptedConversation(Conversation):
    """A Conversation that also lists every HTTP message it read (most are not upgrades), so a
    user and the tests can see that decryption worked even when no WebSocket was inside."""

    def __init__(self, tcp_stream: int, first: Segment, limits: Limits) -> None:
        super().__init__(tcp_stream, first, limits)
        self.messages: list[tuple[bool, tuple[str, str, str], int]] = []  # (from client, start, frame)

    def _message(self, from_client: bool, msg: Message) -> None:
        self.messages.append((from_client, msg.head.start, msg.frames[-1] if msg.frames else 0))
        super()._message(from_client, msg)


@dataclass(slots=True)
class _TlsStream:
    number: int
    client: Endpoint | None = None
    server: Endpoint | None = None
    chunks: list[tuple[int, int, Endpoint, Endpoint, bytes]] = field(default_factory=list)
    alerts: list[tuple[Endpoint, int, int, int]] = field(default_factory=list)
    certificates: list[bytes] = field(default_factory=list)  # the server's, as tshark decrypted them
    certificate_request: bool = False  # the server asked for a client certificate


def decrypted_streams(
    path: str, keylog: str | None, summary: InputSummary | None = None, tls_ports: Iterable[int] = ()
) -> dict[int, _TlsStream]:
    """tshark's decrypted application bytes, grouped by `tcp.stream`, in frame order.

    `tls_ports` are read as TLS whatever tshark's port table says (it gives 17500 to Dropbox
    LAN sync, 8883 to MQTT…): our own pass saw a ServerHello there."""
    streams: dict[int, _TlsStream] = {}
    warnings: list[str] = []
    decode_as = tuple(f"tcp.port=={port},tls" for port in sorted(tls_ports))
    for row in tshark.run_ek(path, FIELDS, "tls", keylog, DISABLE, warnings, decode_as):
        number, eps = tshark.one(row, "tcp.stream"), tshark.endpoints(row)
        if number is None or eps is None:
            continue
        st = streams.setdefault(int(number), _TlsStream(int(number)))
        src, dst = eps
        if 1 in tshark.ints(row, "tls.handshake.type") and st.client is None:
            st.client, st.server = src, dst
        frame, ts = int(tshark.one(row, "frame.number") or 0), tshark.ts_ns(row)
        for lvl, desc in zip(
            tshark.ints(row, "tls.alert_message.level"),
            tshark.ints(row, "tls.alert_message.desc"),
            strict=False,
        ):
            st.alerts.append((src, lvl, desc, frame))
        if src == st.server:  # TLS 1.3 encrypts these: only a key log shows them
            if not st.certificates:
                st.certificates = [_hex(h) for h in row.get("tls.handshake.certificate", [])[:MAX_CERTS]]
            if CERTIFICATE_REQUEST in tshark.ints(row, "tls.handshake.type"):
                st.certificate_request = True
        for hexdata in row.get("data.data", []):
            st.chunks.append((frame, ts, src, dst, _hex(hexdata)))
    if warnings and summary is not None:
        summary.anomalies.append(Anomaly("tshark-warning", warnings[0]))
    return streams


def _hex(text: str) -> bytes:
    try:
        return bytes.fromhex(text.replace(":", ""))
    except ValueError:
        return b""


def handshake_facts(outer: Transport, st: _TlsStream) -> Transport:
    """What decrypting the handshake adds where the capture hid it (TLS 1.3): the server's
    certificates and the alerts sent encrypted, so that a refused certificate is named."""
    tls = outer.tls
    if tls is None or not (st.alerts or st.certificates or st.certificate_request):
        return outer
    client = st.client
    alerts = [TlsAlert("client" if src == client else "server", lvl, d, fr) for src, lvl, d, fr in st.alerts]
    merged = _with_alerts(tls, alerts)
    if not tls.certificates and st.certificates:
        from analyzer.tls.certs import parse_chain

        chain = parse_chain([der for der in st.certificates if der])
        if chain:
            merged = dataclasses.replace(merged, certificates=chain, certificates_hidden=False)
    if st.certificate_request:
        merged = dataclasses.replace(merged, client_certificate_requested=True)
    return dataclasses.replace(outer, tls=merged)


def synthetic_segments(st: _TlsStream) -> Iterable[Segment]:
    """A SYN, a SYN-ACK, then each decrypted chunk at the next sequence number of its side."""
    if not st.chunks:
        return
    frame, ts, src, dst, _ = st.chunks[0]
    client = st.client or src
    server = st.server or dst
    yield Segment(0, ts, client, server, 0, 0, TcpFlags.SYN, b"")
    yield Segment(0, ts, server, client, 0, 1, TcpFlags.SYN | TcpFlags.ACK, b"")
    nxt = {client: 1, server: 1}
    for frame, ts, src, dst, data in st.chunks:
        seq = nxt.get(src, 1)
        nxt[src] = seq + len(data)
        yield Segment(frame, ts, src, dst, seq, nxt.get(dst, 1), TcpFlags.ACK | TcpFlags.PSH, data)


def _with_alerts(tls: TlsDetails, alerts: list[TlsAlert]) -> TlsDetails:
    """The alerts our pass saw, plus those tshark decrypted (which name an encrypted one)."""
    seen = {(a.by, a.level, a.description) for a in tls.alerts}
    extra = tuple(a for a in alerts if (a.by, a.level, a.description) not in seen)
    known = tuple(a for a in tls.alerts if not a.encrypted or not extra)
    return dataclasses.replace(tls, alerts=known + extra)


def inside(outer: Transport, inner: Transport, alerts: list[TlsAlert]) -> Transport:
    """The real connection's facts with what TLS carried: payload kinds and sizes from inside."""
    tls = outer.tls
    if tls is not None:
        tls = dataclasses.replace(_with_alerts(tls, alerts), decrypted=True)
    return dataclasses.replace(
        outer,
        client_payload=inner.client_payload,
        server_payload=inner.server_payload,
        client_bytes=inner.client_bytes,
        server_bytes=inner.server_bytes,
        tls=tls,
    )


def harvest(
    path: str,
    summary: InputSummary,
    limits: Limits,
    keylog: str | None,
    messages: list[tuple[int, bool, tuple[str, str, str], int]] | None = None,
) -> Harvest:
    """Our own pass over the capture, then the decrypted TLS streams through our own model.

    `messages`, when given, receives every decrypted HTTP message: (stream, from client, start
    line, frame)."""
    from analyzer.run import file_segments
    from analyzer.tls.keylog import embedded_randoms, read_keylog

    wanted = read_keylog(keylog) if keylog else set()
    table = TransportTable(limits)
    try:
        for seg in file_segments(path, summary, limits):
            table.feed(seg)
    except CaptureError as e:
        summary.error = str(e)
        summary.readable_to_end = False
    finally:
        table.flush()
        summary.anomalies.extend(table.harvest.anomalies)
    out = table.harvest
    wanted |= embedded_randoms(path)
    _mark_keys(table, wanted, summary)
    out.handshakes = [
        dataclasses.replace(h, transport=table.transports[h.tcp_stream])
        if h.tcp_stream in table.transports
        else h
        for h in out.handshakes
    ]
    if summary.error is not None:
        return out
    try:
        streams = decrypted_streams(path, keylog, summary, table.tls_ports)
    except tshark.TsharkMissing as e:
        summary.anomalies.append(Anomaly("tls-not-decrypted", str(e)))
        return out
    seen: list[tuple[int, bool, tuple[str, str, str], int]] = []
    replaced: set[int] = set()
    for number, st in sorted(streams.items()):
        outer = table.transports.get(number)
        if outer is None:
            continue
        outer = table.transports[number] = handshake_facts(outer, st)
        if not st.chunks:
            continue
        conv: DecryptedConversation | None = None
        for seg in synthetic_segments(st):
            if conv is None:
                conv = DecryptedConversation(number, seg, limits)
            conv.feed(seg)
        assert conv is not None
        handshakes, otas, inner = conv.finish()
        seen += [(number, *m) for m in conv.messages]
        client = conv.client or st.client
        alerts = [
            TlsAlert("client" if src == client else "server", lvl, d, fr) for src, lvl, d, fr in st.alerts
        ]
        transport = inside(outer, inner, alerts)
        replaced.add(number)
        out.handshakes += [dataclasses.replace(h, transport=transport) for h in handshakes]
        out.otas += otas
    out.handshakes = [
        h
        if h.tcp_stream in replaced or h.tcp_stream not in table.transports
        else dataclasses.replace(h, transport=table.transports[h.tcp_stream])  # facts of a failed one
        for h in out.handshakes
        if h.tcp_stream not in replaced or h.request or h.response
    ]
    if messages is not None:
        messages += seen
    sessions = sum(1 for t in table.transports.values() if t.tls is not None and t.tls.version)
    requests = sum(1 for m in seen if m[1])
    summary.anomalies.append(
        Anomaly(
            "tls-decrypted",
            f"{len(replaced)} of {sessions} TLS sessions decrypted; {requests} HTTP request(s) inside",
        )
    )
    return out


def _mark_keys(table: TransportTable, wanted: set[str], summary: InputSummary) -> None:
    """Says, per TLS session, whether the key log has its keys; one anomaly for those without."""
    missing = 0
    for number, t in table.transports.items():
        if t.tls is None or not t.tls.client_random:
            continue
        has = t.tls.client_random in wanted
        missing += not has
        table.transports[number] = dataclasses.replace(
            t, tls=dataclasses.replace(t.tls, keys="matched" if has else "missing")
        )
    if missing:
        summary.anomalies.append(
            Anomaly(
                "tls-keys-missing",
                f"the key log has no keys for {missing} of {len(table.transports)} TLS sessions",
            )
        )
