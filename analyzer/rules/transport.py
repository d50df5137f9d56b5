"""WS0xx: what TCP and TLS did before (or instead of) any HTTP answer."""

from __future__ import annotations

from collections.abc import Iterator

from analyzer.model import Handshake, Payload, Severity
from analyzer.rules._facts import Rejection, after_upgrade, describe_answer, frame_ref, silence_before_close
from analyzer.rules._pages import proxy_page
from analyzer.rules._rule import Context, Hit, rule
from analyzer.tlsinfo import alert_name

TLS_PORTS = frozenset({443, 8443, 9443, 4433, 4443, 10443, 5443, 993, 995, 465, 636, 853})


def _retries(hs: Handshake) -> str:
    n = hs.transport.syn_retries
    return f" ({n} retransmission{'s' if n != 1 else ''})" if n else ""


@rule(
    "WS001",
    "port-closed",
    Severity.ERROR,
    rank=10,
    title="The server's host answered the SYN with a RST: nothing listens on that port",
    fix="Start the server or fix the port in the URL (xiaozhi: WebSocket 8000, OTA 8003, manager-api 8002); "
    "check the Docker port mapping and that the server binds 0.0.0.0, not 127.0.0.1.",
)
def port_closed(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A connection whose SYN was answered by a TCP RST instead of a SYN-ACK.

    Why it is refused:
    The host is up but no process listens on that port (or a host firewall rejects with a
    reset). The client sees `connection refused`; the ESP32 logs
    `Failed to connect to <ip>:<port>`. No HTTP is ever exchanged.

    Example:
    `SYN 10.0.0.5:51234 → 10.0.0.2:8000`, then `RST,ACK 10.0.0.2:8000 → 10.0.0.5:51234`.

    Fix:
    Start the server, connect to the port it really listens on, publish the port from the
    container (`ports: - "8000:8000"`), bind to `0.0.0.0`.

    References:
    RFC 9293 §3.10.7.1; field-failures A4, A5.
    """
    t = hs.transport
    if hs.request is None and t.syn and not t.syn_ack and t.server_rst and t.client_payload == Payload.NONE:
        yield Hit(
            f"{hs.server} refused the connection: the SYN was answered with RST{_retries(hs)}",
            evidence="SYN → RST, no SYN-ACK",
        )


@rule(
    "WS002",
    "no-answer",
    Severity.ERROR,
    rank=60,
    title="The server never answered (SYN unanswered, or the request got no response)",
    fix="Check that the address is reachable from the client (firewall, security group, Docker/LAN address); "
    "if the request arrived, check the request for what the server silently drops.",
)
def no_answer(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A SYN that never got a SYN-ACK nor a RST, or a request after which the server sent no byte
    (it closed with FIN, or stayed silent until the end of the capture).

    Why it is refused:
    An unanswered SYN means a firewall or security group drops the packets, the host is down,
    or the address is wrong (an OTA `websocket.url` pointing at a Docker-internal or LAN
    address). A request that gets no answer at all is what `websockets` 14.2 (xiaozhi-server)
    does with a request it cannot parse: HTTP/1.0, non-GET, a body, bare LF, >128 headers; other
    rules name those when the request shows them and rank them first.

    Example:
    `SYN → 172.18.0.2:8000` retransmitted 1 s, 3 s, 7 s later; no answer.

    Fix:
    Open the port (`ufw allow 8000`, cloud security group), use an address the device can reach;
    for a silent close look at the request's other findings.

    References:
    xiaozhi-protocol.md §2 (request parsing failures), §6 rows 15-17; field-failures A4.
    """
    t = hs.transport
    if hs.request is None:
        if t.syn and not t.syn_ack and not t.server_rst and t.client_payload == Payload.NONE:
            yield Hit(
                f"SYN to {hs.server} was never answered{_retries(hs)}: packets are dropped "
                "(firewall/security group), the host is down, or the address is wrong",
                evidence="SYN without SYN-ACK or RST",
                rank=10,
            )
        return
    if hs.response is not None or t.server_rst or t.server_payload != Payload.NONE:
        return
    if "head-incomplete" in hs.request.anomalies:
        yield Hit(
            "the request head never ended (no blank line after the headers), so the server kept "
            "waiting and then dropped it (websockets: 10 s open_timeout); the client wrote only part "
            "of its request, or the rest was never sent",
            evidence="request without the terminating CRLF CRLF",
            rank=20,
            fix="End the request head with an empty line (CRLF CRLF) and send it whole, within the "
            "server's 10 s.",
        )
        return
    if t.server_fin:
        msg = (
            f"{hs.server} received the request and closed the connection without answering a byte "
            "(a TLS-only port does this to a plain request: try wss://; so do a proxy rule that "
            "drops, and servers that cannot parse the request)"
        )
        yield Hit(msg, evidence="request sent, server FIN, 0 response bytes")
    else:
        yield Hit(
            f"{hs.server} never answered the request within the capture",
            evidence="request sent, no response bytes",
            rank=65,
        )


@rule(
    "WS003",
    "connection-reset",
    Severity.ERROR,
    rank=60,
    title="The server reset the connection instead of answering",
    fix="Look at the request's other findings (what the server drops) and at the server's log; "
    "a proxy or IDS in the path may also inject resets.",
)
def connection_reset(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The server side sent a TCP RST after the connection was established, with no HTTP
    response before it.

    Why it is refused:
    The server (or something in the path) aborted the connection: `websockets` aborts when the
    opening handshake does not finish within 10 s or the request cannot be parsed; a proxy,
    IDS or a crashed worker may reset too.

    Example:
    `GET /xiaozhi/v1/ HTTP/1.1 …` then `RST` from port 8000.

    Fix:
    Check the request's other findings first; then the server log at that time.

    References:
    xiaozhi-protocol.md §2 (open_timeout 10 s), §6 rows 15 and 17.
    """
    t = hs.transport
    started = t.syn_ack or hs.request is not None
    if hs.response is None and t.server_rst and t.server_payload == Payload.NONE and started:
        when = "after the request" if hs.request is not None else "before the client sent anything"
        yield Hit(
            f"{hs.server} reset the connection {when}, with no HTTP response",
            evidence="server RST, 0 response bytes",
        )


@rule(
    "WS004",
    "tls-to-plain-port",
    Severity.ERROR,
    rank=5,
    title="The client spoke TLS (wss://) to a plain ws:// port",
    fix="Use ws:// for this port, or put a TLS terminator in front and use its port with wss://.",
)
def tls_to_plain_port(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The client's first bytes are a TLS record (ClientHello) and the server did not answer with
    TLS: it answered plain HTTP, or closed without a byte.

    Why it is refused:
    The URL says `wss://` (or a 4G modem forces TLS) but the port speaks plain HTTP. xiaozhi-server
    (websockets 14.2) logs `did not receive a valid HTTP request` and either answers
    `400 … did not receive a valid HTTP request.` or just closes; the ESP32 logs an mbedTLS
    error (`-0x7280`).

    Example:
    Client → :8000 `16 03 01 02 00 01 …`; server → `HTTP/1.1 400 Bad Request`.

    Fix:
    Change the URL to `ws://host:8000/xiaozhi/v1/` (OTA `server.websocket`), or terminate TLS
    in nginx on 443 and use that port with `wss://`.

    References:
    xiaozhi-protocol.md §2, §6 row 16; field-failures A3, A7; RFC 8446 §5.1.
    """
    t = hs.transport
    if t.client_payload != Payload.TLS or t.server_payload == Payload.TLS:
        return
    port = hs.server.port
    if hs.response is not None:
        yield Hit(
            f"a TLS ClientHello was sent to {hs.server}, which answered plain HTTP: "
            f"{describe_answer(hs.response)}",
            evidence="client bytes 16 03 …; plain HTTP answer",
        )
    elif t.server_payload == Payload.OTHER:
        yield Hit(
            f"a TLS ClientHello was sent to {hs.server}, which answered non-TLS bytes",
            evidence="client bytes 16 03 …",
            rank=10,
        )
    elif port not in TLS_PORTS and (t.server_fin or t.server_rst):
        yield Hit(
            f"a TLS ClientHello was sent to {hs.server} and the server closed without a TLS answer: "
            f"port {port} speaks plain ws://",
            evidence="client bytes 16 03 …; server closed",
            rank=10,
        )
    elif port not in TLS_PORTS:
        yield Hit(
            f"a TLS ClientHello was sent to {hs.server} and got no TLS answer; port {port} is usually "
            "plain HTTP",
            evidence="client bytes 16 03 …; no server bytes",
            rank=30,
        )


@rule(
    "WS005",
    "plain-to-tls-port",
    Severity.ERROR,
    rank=5,
    title="The client sent a plain ws:// request to a TLS (wss://) port",
    fix="Use wss:// for this port (or the plain port with ws://).",
)
def plain_to_tls_port(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A plaintext HTTP request answered by TLS bytes (an alert), by nginx's
    `400 The plain HTTP request was sent to HTTPS port` page (Go servers such as Caddy and Traefik:
    `Client sent an HTTP request to an HTTPS server.`; Apache: `speaking plain HTTP to an
    SSL-enabled server port`), or closed without a byte by a
    server on a usual TLS port (443, 8443, …) or one that speaks TLS on other connections.

    Why it is refused:
    The port expects a TLS ClientHello. A TLS server answers the `GET` with an alert and closes
    (Python's ssl server just closes); nginx answers its own 400 page. Some ML307 4G firmware
    decided TLS by port number and sent plain bytes to a wss port.

    Example:
    `GET /xiaozhi/v1/ HTTP/1.1` → `15 03 03 00 02 02 46` (fatal alert), or
    `HTTP/1.1 400 Bad Request … The plain HTTP request was sent to HTTPS port`.

    Fix:
    Use `wss://host:port/…` on that port (and a certificate the device trusts).

    References:
    field-failures A3, A7; nginx `ngx_http_ssl_module` (error 497).
    """
    t = hs.transport
    if hs.request is None:
        return
    if t.server_payload == Payload.TLS:
        alert = f" (alert {t.tls_alert[1]})" if t.tls_alert else ""
        yield Hit(
            f"the plaintext request to {hs.server} was answered with TLS bytes{alert}: "
            "the port expects wss://",
            evidence="server bytes are a TLS record",
        )
    elif hs.response is not None and "plain HTTP request was sent to HTTPS port" in hs.response.body.decode(
        "latin-1"
    ):
        yield Hit(
            f"{hs.server} (nginx) says: The plain HTTP request was sent to HTTPS port",
            evidence=describe_answer(hs.response),
        )
    elif hs.response is not None and (page := proxy_page(hs.response)) and page.kind == "tls-port":
        yield Hit(
            f"{hs.server} ({page.proxy}) answered {hs.response.status}: {page.meaning}",
            evidence=describe_answer(hs.response),
        )
    elif hs.response is None and t.server_payload == Payload.NONE and (t.server_fin or t.server_rst):
        tls_peer = any(
            o.server == hs.server and o.transport.tls_server_hello for o in ctx.handshakes if o is not hs
        )
        if tls_peer or hs.server.port in TLS_PORTS:
            why = "other connections to it speak TLS" if tls_peer else f"port {hs.server.port} is usually TLS"
            yield Hit(
                f"{hs.server} closed the plaintext request without a byte and {why}: a TLS server "
                "drops a request that is not a ClientHello",
                evidence="request sent, server closed, 0 response bytes",
                rank=10 if tls_peer else 30,
            )


@rule(
    "WS006",
    "tls-handshake-failed",
    Severity.ERROR,
    rank=10,
    title="The TLS handshake failed with an alert",
    fix="Read the alert: certificate trust (CA bundle on the device), SNI/host name, protocol version or "
    "key type (ML307 modems reject ECDSA certificates).",
)
def tls_handshake_failed(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    Both sides speak TLS and one of them (usually the server) sent a TLS alert during the
    handshake; a client alert means it rejected the server's certificate or parameters.

    Why it is refused:
    No WebSocket request can be sent before TLS is up. Typical alerts: `handshake_failure` (no
    common cipher/curve, ECDSA certificate for a 4G modem), `protocol_version`,
    `unrecognized_name` (SNI), `certificate_required`.

    Example:
    ClientHello → `15 03 03 00 02 02 28` (fatal, handshake_failure).

    Fix:
    Match TLS version/ciphers and certificate type to the device; send SNI; install the right
    CA bundle on the device.

    References:
    RFC 8446 §6; field-failures E1, A7, B4.
    """
    t = hs.transport
    if t.client_payload == Payload.TLS and t.server_payload == Payload.TLS and t.tls_alert is not None:
        level, desc = t.tls_alert
        name = alert_name(desc)
        kind = "fatal" if level == 2 else "warning"
        if t.tls_alert_by == "client":
            yield Hit(
                f"the client ended the TLS handshake with {hs.server} with a {kind} alert: {name} ({desc}); "
                "it rejected the server's certificate or parameters",
                evidence=f"client TLS alert level {level} description {desc}",
            )
            return
        tls = t.tls
        offered = ", ".join(tls.offered_versions) if tls is not None and tls.offered_versions else "?"
        why = {
            40: "no cipher suite, curve or signature algorithm in common with what the client offered",
            70: f"no TLS version in common: the client offered {offered}, the server's minimum is higher "
            "(nginx `ssl_protocols`, HAProxy `ssl-min-ver`)",
            112: f"it has no certificate for the SNI name {t.tls_sni!r}",
            116: "it requires a client certificate (mutual TLS: nginx `ssl_verify_client on`) and got none",
            120: "no ALPN protocol in common",
        }.get(desc)
        yield Hit(
            f"{hs.server} ended the TLS handshake with a {kind} alert: {name} ({desc})"
            + (f": {why}" if why else ""),
            evidence=f"TLS alert level {level} description {desc}",
        )


@rule(
    "WS007",
    "no-server-hello",
    Severity.ERROR,
    rank=40,
    title="The server never said hello (TLS ServerHello, or the xiaozhi hello reply)",
    fix="TLS: check the server's TLS config and SNI. xiaozhi: bind the device in the console (the bind code "
    "comes from OTA), check that the manager-api answers /config/agent-models quickly.",
)
def no_server_hello(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    (a) A TLS ClientHello to a TLS port with no ServerHello back. (b) xiaozhi: after the 101 the
    client sent its JSON `hello` and no `{"type":"hello"}` came back (and no Close) before the
    client gave up or 10 s passed; a `stt` frame with the bind prompt is reported with it.

    Why it is refused:
    (a) The TLS server dropped the ClientHello (SNI routing, protocol filter). (b) xiaozhi-server
    discards every message, including `hello`, while the device is not bound in the manager-api,
    or while the manager-api lookup takes more than 1 s; the firmware gives up after 10 s
    (`Failed to receive server hello`).

    Example:
    `{"type":"hello","version":1,…}` → `{"type":"stt","text":"请登录控制面板…绑定设备。"}`.

    Fix:
    Bind the device with the 6-digit code shown after OTA; make sure OTA and WebSocket point
    at the same deployment; check the manager-api's health and latency.

    References:
    xiaozhi-protocol.md §1.5, §5, §6 row 18; field-failures C4.
    """
    t = hs.transport
    if (
        hs.request is None
        and t.client_payload == Payload.TLS
        and t.server_payload == Payload.NONE
        and hs.server.port in TLS_PORTS
    ):
        closed = " and closed" if t.server_fin or t.server_rst else ""
        yield Hit(
            f"{hs.server} never answered the TLS ClientHello{closed}", evidence="no ServerHello", rank=20
        )
        return
    if not ctx.xiaozhi:
        return
    a = after_upgrade(hs, True)
    if a.client_hello is None or a.server_hello is not None or a.server_close is not None:
        return
    if hs.transport.gaps:  # bytes the capture lost (tcpdump drops): the hello may be among them
        yield Hit(
            f"the client sent hello; no server hello was captured, but the capture lost bytes of this "
            f"connection ({hs.transport.gaps} gap(s)): it may be among them, so this is no verdict",
            evidence="client hello" + frame_ref(a.client_hello),
            severity=Severity.WARNING,
        )
    elif a.rejection == Rejection.NO_HELLO:
        extra = f"; the server sent the bind prompt {a.bind_text!r}" if a.bind_text else ""
        yield Hit(
            "the client sent hello and the server never answered hello"
            + extra
            + " (device not bound, or the manager-api lookup is slow)",
            evidence="client hello" + frame_ref(a.client_hello),
        )
    elif a.server_text is None:
        yield Hit(
            "the client sent hello; no server hello was captured (the capture may end too early)",
            evidence="client hello" + frame_ref(a.client_hello),
            severity=Severity.WARNING,
        )


# Documented idle timeouts of what sits between a device and its server, by their seconds.
IDLE_CLOSERS = (
    (50, "HAProxy's `timeout client`/`timeout server` (50 s in Debian's and Ubuntu's stock haproxy.cfg; "
     "`timeout tunnel` overrides them for WebSockets)"),
    (60, "nginx's `proxy_read_timeout` (60 s by default), Apache's `Timeout` (60 s), or a load balancer's "
     "idle timeout (AWS ALB: 60 s)"),
    (100, "Cloudflare's proxy (it closes WebSocket connections idle for 100 s)"),
    (270, "Cloudflare Zero Trust / cloudflared (270 s idle)"),
    (350, "an AWS Network Load Balancer (350 s idle timeout for TCP)"),
)
IDLE_SLACK_S = 2.0  # a timer fires a little late; captures stamp a little early or late
SAME_SILENCE_S = 1.0  # closes after this much the same silence come from one timer
MIN_TIMEOUT_S = 10.0  # shorter silences are conversation pauses, unless they agree this closely:
SAME_SHORT_SILENCE_S = 0.1  # three closes after 5.0 s each are a timer (HAProxy `timeout tunnel 5s`)
MIN_SHORT_TIMEOUT_S = 2.0  # below this, even agreeing silences are a script's pauses


@rule(
    "WS008",
    "closed-after-idle",
    Severity.WARNING,
    rank=70,
    title="After the upgrade, the connection was closed after a fixed silence: a proxy's idle timeout",
    fix="Keep the connection busy (WebSocket pings more often than the timeout; xiaozhi-server's websockets "
    "library pings every 20 s unless disabled) or raise the timeout: nginx `proxy_read_timeout 3600s;` "
    "(and `proxy_send_timeout`), the load balancer's idle timeout.",
)
def closed_after_idle(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    An upgraded connection whose first FIN or RST came after a silence (no payload either way)
    matching a well-known idle timeout to within 2 s: 60 s (nginx `proxy_read_timeout`, AWS
    ALB, Apache), 50 s (HAProxy's stock config), 100 s (Cloudflare), 270 s (Cloudflare Zero
    Trust), 350 s (AWS NLB); or a silence that at least two other connections of the capture
    also ended after, closed by the same side (within 1 s; within 0.1 s for silences under
    10 s): a timer with a custom value. Names who closed.

    Why it is refused:
    A proxy or load balancer drops a connection nothing was sent on for its idle timeout,
    whatever the WebSocket is for; the device sees a close 1006 (no Close frame) "every minute"
    or on the second conversation turn. Seen from the backend, the proxy (its client) closes.

    Example:
    101, audio frames, 60.0 s of silence, then `FIN` from the nginx side.

    Fix:
    Send pings more often than the timeout, or raise the proxy's timeout.

    References:
    field-failures D6; xiaozhi-protocol.md (websockets keep-alive: ping every 20 s).
    """
    silence = silence_before_close(hs)
    if silence is None:
        return
    t = hs.transport
    closer = hs.server if t.closed_by == "server" else hs.client
    evidence = f"last payload, then {silence:.1f} s, then the first FIN/RST from the {t.closed_by}"
    said = f"{closer} ({t.closed_by}) closed the connection after {silence:.1f} s without a byte either way"
    for seconds, who in IDLE_CLOSERS:
        if abs(silence - seconds) <= IDLE_SLACK_S:
            yield Hit(f"{said}: {who}", evidence=evidence)
            return
    if silence < MIN_SHORT_TIMEOUT_S:
        return
    within = SAME_SILENCE_S if silence >= MIN_TIMEOUT_S else SAME_SHORT_SILENCE_S
    alike = sum(
        1 for other, by in ctx.lookup.idle_closes if by == t.closed_by and abs(other - silence) <= within
    )
    if alike >= 3:  # this one and two more: one timer, not chance
        yield Hit(
            f"{said}, as {alike - 1} other connections in this capture did: a fixed idle timeout of "
            f"about {silence:.0f} s in a proxy or load balancer (HAProxy `timeout tunnel`, nginx "
            "`proxy_read_timeout`, Apache `Timeout`, Caddy `read_timeout`…)",
            evidence=evidence,
        )


RULES = (
    port_closed,
    no_answer,
    connection_reset,
    tls_to_plain_port,
    plain_to_tls_port,
    tls_handshake_failed,
    no_server_hello,
    closed_after_idle,
)
