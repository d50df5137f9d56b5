"""WS3xx: what the answer says, read past the status line (who wrote it, and its body)."""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

from analyzer.model import Handshake, HttpRequest, HttpResponse, Opcode, Outcome, Payload, Severity
from analyzer.rules._facts import (
    accept_for,
    asgi_server,
    body_text,
    describe_answer,
    frame_ref,
    gorilla_refusal,
    has_websocket_markers,
    header_line,
    is_bare_403,
    is_websocket_attempt,
    is_websockets_server,
    json_body,
    path_of,
    proxy_name,
    same_origin,
    server_header,
    tokens,
    tomcat_page,
    valid_key,
    ws_complaint,
)
from analyzer.rules._pages import proxy_page
from analyzer.rules._rule import Context, Hit, rule
from analyzer.rules.legs import legs_of
from analyzer.rules.request import longest_line

DROPPED_AT_ONCE_NS = 1_000_000_000  # a client that closes this soon after a 101, frameless, refused it
LONG_LINE = 4096  # a header line this long is worth naming when a proxy says the request was bad
APP_FIX = (
    "Use the path the application routes WebSockets on, and meet its conditions for accepting (auth, "
    "Origin, allowed hosts); its log shows why it refused."
)

XIAOZHI_PORTS = {8000: "the WebSocket port", 8002: "the manager-api", 8003: "the OTA/HTTP port (aiohttp)"}


def _port_note(port: int) -> str:
    known = XIAOZHI_PORTS.get(port)
    return (
        f" (port {port} is {known} in a default xiaozhi deployment; the WebSocket is on 8000)"
        if known
        else ""
    )


@rule(
    "WS301",
    "redirect",
    Severity.ERROR,
    rank=10,
    title="The server answered a redirect (3xx); WebSocket clients do not follow it",
    fix="Connect to the Location directly; an http→https redirect means: use wss:// (and port 443).",
)
def redirect(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A 3xx answer to the upgrade request, and where its `Location` points.

    Why it is refused:
    RFC 6455 lets clients treat any status other than 101 as failure, and almost all do (the
    ESP32 firmware, arduinoWebSockets, browsers). Typical sources: Traefik/Caddy HTTP→HTTPS
    redirects, path normalisation adding a trailing slash.

    Example:
    `HTTP/1.1 308 Permanent Redirect`, `Location: https://example.com/xiaozhi/v1/`.

    Fix:
    Use the final URL; for an http→https redirect switch to `wss://`.

    References:
    RFC 6455 §4.1 (client requirements, step 5 of validating the response); field-failures A6.
    """
    resp = hs.response
    if hs.request is None or resp is None or not 300 <= resp.status < 400:
        return
    loc = resp.header("location")
    if loc is None:
        yield Hit(
            f"the server answered {resp.status} {resp.reason} without a Location",
            evidence=describe_answer(resp),
        )
        return
    try:
        target = urlsplit(loc)
    except ValueError:  # a Location no URL parser accepts (`http://[::1`): quoted as it is
        target = urlsplit("")
    hint = ""
    if target.scheme == "https":
        hint = ": the site wants TLS, use wss://"
    elif target.path and target.path.rstrip("/") == path_of(hs.request).rstrip("/"):
        hint = f": use the path {target.path} exactly"
    yield Hit(
        f"the server redirects ({resp.status}) to {loc}{hint}; WebSocket clients do not follow redirects",
        evidence=header_line(resp, "Location"),
    )


@rule(
    "WS302",
    "server-is-running-page",
    Severity.ERROR,
    rank=20,
    title="xiaozhi-server answered `200 Server is running` instead of 101",
    fix="Make the request reach xiaozhi-server with exactly `Connection: Upgrade` and `Upgrade: websocket`; "
    "behind nginx: `proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; "
    'proxy_set_header Connection "upgrade";`.',
)
def server_is_running_page(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A `200` whose body starts with `Server is running` answering an upgrade request.

    Why it is refused:
    xiaozhi-server's `process_request` hook answers this page whenever the `Connection` header
    is not exactly `upgrade`: a token list (Firefox), `close` or none (a proxy that does not
    forward hop-by-hop headers). The firmware only sees "not 101" (`WebSocket handshake failed`).
    `Server: …websockets/…` means the server answered directly; `Server: nginx` or `Via` means a
    proxy relayed it, i.e. the proxy dropped the upgrade. The page is a symptom, so for a
    WebSocket attempt the finding that names what to change is the verdict and this one supports
    it: `connection-token-list` for `keep-alive, Upgrade`, `missing-upgrade-headers` when the
    headers were dropped (by the client or a proxy). Only for a plain GET with no WebSocket
    header at all (a browser or curl opening the ws:// URL) is this page the verdict.

    Example:
    `HTTP/1.1 200 OK`, `Server: Python/3.10 websockets/14.2`, body `Server is running\\n`.

    Fix:
    Send exactly `Connection: Upgrade`; configure the proxy to forward Upgrade and Connection.

    References:
    xiaozhi-server `core/websocket_server.py` `_http_response`; xiaozhi-protocol.md §1.2, §6 row 12;
    field-failures D1, B3.
    """
    req, resp = hs.request, hs.response
    if req is None or resp is None or resp.status != 200 or not resp.body.startswith(b"Server is running"):
        return
    conn = [v.strip() for v in req.headers_named("connection")]
    listed = len(conn) == 1 and "upgrade" in tokens(req, "connection") and conn[0].lower() != "upgrade"
    proxy = proxy_name(resp)
    relayed = f" (relayed by {proxy})" if proxy else ""
    if not has_websocket_markers(req):
        why = "a plain HTTP request without Upgrade/Sec-WebSocket-* headers (a browser or curl opened the "
        why, rank = why + "ws:// URL): the server is up; connect with a WebSocket client", 20
    elif listed:
        why, rank = f"the request's `Connection: {conn[0]}` is a list, not exactly `upgrade`", 50
    else:
        shown = f"`Connection: {conn[0]}`" if conn else "no exact `Connection: upgrade`"
        why, rank = f"xiaozhi-server saw {shown}: the upgrade headers did not reach it{relayed}", 50
    yield Hit(f"200 Server is running instead of 101: {why}", evidence=describe_answer(resp), rank=rank)


def _service_guess(hs: Handshake) -> str:
    resp = hs.response
    assert resp is not None
    obj = json_body(resp.body)
    text = body_text(resp)
    if isinstance(obj, dict) and "code" in obj and "msg" in obj:
        return f"a JSON API answer {text.strip()[:60]!r} (the manager-api answers foreign paths this way)"
    if "OTA" in text:
        return "the OTA endpoint's page"
    if '"sid"' in text:
        return "a Socket.IO/Engine.IO endpoint (a raw WebSocket client cannot talk to it)"
    if "<html" in text.lower():
        return "a web page"
    return f"an HTTP answer {describe_answer(resp)}"


@rule(
    "WS303",
    "wrong-service",
    Severity.ERROR,
    rank=10,
    title="The request reached another service (manager-api, OTA/HTTP port, a web app), not the WebSocket",
    fix="Use the WebSocket URL the OTA hands out (xiaozhi: ws://<host>:8000/xiaozhi/v1/); 8002 is the "
    "manager-api and 8003 the OTA/HTTP port.",
)
def wrong_service(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A `200` that is not xiaozhi's `Server is running` page (e.g. the manager-api's JSON
    `{"code":401,"msg":"未授权"}`), an aiohttp 404 (xiaozhi's HTTP port), a Socket.IO server's
    400 `Transport unknown`, a port that answers non-HTTP bytes, or a port other than
    `--expect-port`.

    Why it is refused:
    Anything but 101 fails the upgrade; the firmware logs the same `WebSocket handshake failed`
    for all of them. Users often point the device at 8002 (manager-api, whose Shiro filter
    answers HTTP 200 with a JSON 401) or 8003 (aiohttp: `404: Not Found`).

    Example:
    `GET /xiaozhi/v1/` to :8002 → `HTTP/1.1 200`, body `{"code":401,"msg":"未授权"}`.

    Fix:
    Connect to the WebSocket port (8000 by default) with the path `/xiaozhi/v1/`.

    References:
    xiaozhi-protocol.md §1.1, §5; field-failures §0.3, A2, B8.
    """
    req, resp, t = hs.request, hs.response, hs.transport
    if req is None:
        return
    port = hs.server.port
    expected = ctx.config.expect_port
    if resp is None and t.server_payload == Payload.OTHER:
        yield Hit(
            f"{hs.server} answered bytes that are not HTTP: another protocol listens there{_port_note(port)}",
            evidence="server bytes are not HTTP",
        )
    elif (
        resp is not None
        and resp.status == 200
        and not resp.body.startswith(b"Server is running")
        and not _no_route(resp)
    ):
        yield Hit(
            f"{hs.server} answered 200 with {_service_guess(hs)}{_port_note(port)}",
            evidence=describe_answer(resp),
        )
    elif resp is not None and resp.status == 404 and ctx.xiaozhi and "aiohttp" in server_header(resp).lower():
        yield Hit(
            f"aiohttp answered 404: this is xiaozhi's HTTP (OTA) port, not the WebSocket{_port_note(port)}",
            evidence=describe_answer(resp),
        )
    elif resp is not None and resp.status != 101 and _socketio(req, resp):
        yield Hit(
            "a Socket.IO (Engine.IO) server answered: it speaks its own protocol over WebSocket, so a "
            "plain WebSocket client is refused; use a Socket.IO client, or the path "
            "`/socket.io/?EIO=4&transport=websocket` and the Engine.IO framing",
            evidence=describe_answer(resp),
            fix="Talk Socket.IO to a Socket.IO server (a Socket.IO client library), or point the "
            "device at a plain WebSocket endpoint.",
        )
    if expected is not None and port != expected:
        failed = hs.outcome != Outcome.UPGRADED
        yield Hit(
            f"the connection went to port {port}, expected {expected}",
            evidence=str(hs.server),
            severity=Severity.ERROR if failed else Severity.WARNING,
            rank=25 if failed else 80,
        )


def _asgi_refusal(server: str, req: HttpRequest, expected_path: str | None = None) -> str:
    if server == "daphne":
        if not req.headers_named("origin"):
            return (
                "daphne answered 403 Access denied: the Channels app closed before accept(); a request "
                "without Origin is refused by `AllowedHostsOriginValidator` (devices send none), else "
                "the consumer refused it (auth) or no route matched"
            )
        return (
            "daphne answered 403 Access denied: the Channels app closed before accept(): the consumer "
            "refused it (auth), or an Origin/allowed-hosts validator did"
        )
    if expected_path is not None and path_of(req) == expected_path:
        return (
            f"{server} answered a bare 403 on the expected path: the ASGI app closed the WebSocket "
            "before accept(): the route's own check (auth, Origin, a dependency) refused it"
        )
    return (
        f"{server} answered a bare 403: the ASGI app closed the WebSocket before accept(): no route "
        f"matched {path_of(req)} (Starlette/FastAPI answer 403 for that), or the route's own check "
        "(auth, Origin) refused it"
    )


def _no_route(resp: HttpResponse) -> bool:
    """A proxy's answer for a request no route matched (Caddy's empty 200): wrong-path says it."""
    page = proxy_page(resp)
    return page is not None and page.kind == "no-route"


def _http10_upstream(hs: Handshake, ctx: Context) -> Handshake | None:
    """The proxy's copy of this request, when the capture has it and it went out as HTTP/1.0."""
    legs = legs_of(hs, ctx)
    if legs is None or legs[0] is not hs:
        return None
    up = legs[1]
    return up if up.request is not None and up.request.version.upper() == "HTTP/1.0" else None


def _failed_upstream(hs: Handshake, ctx: Context) -> Handshake | None:
    """The proxy's failed connection to its upstream, when the capture has it: a connection
    that carried no request, opened after this request came and before the gateway error."""
    if hs.request is None or hs.response is None or not hs.request.ts_ns:
        return None
    start, answered = hs.request.ts_ns, hs.response.ts_ns or hs.request.ts_ns
    tried = [
        o
        for o in ctx.handshakes
        if o.request is None
        and o.server != hs.server
        and o.transport.syn
        and start <= o.transport.first_ns <= answered
    ]
    return min(tried, key=lambda o: o.transport.first_ns - start) if tried else None


def _socketio(req: HttpRequest, resp: HttpResponse) -> bool:
    """A Socket.IO server refusing a plain WebSocket client: Node's engine.io says `Transport
    unknown`; python-socketio under uvicorn closes before accept (a bare 403) when `EIO=` is missing."""
    if b'"Transport unknown"' in resp.body:
        return True
    return req.target.startswith("/socket.io") and "EIO=" not in req.target


def _html_page(resp_body: str) -> bool:
    low = resp_body.lower()
    return "<html" in low or "<!doctype" in low


@rule(
    "WS304",
    "proxy-rejected",
    Severity.ERROR,
    rank=40,
    title="A proxy, CDN or WAF in front refused the request (its own 403/502/503 page: nginx, HAProxy, "
    "Apache, Caddy, Squid, Cloudflare…)",
    fix="Fix what is in front: allow the device in the proxy or WAF rules, start the upstream, and forward "
    "the upgrade (nginx: `proxy_http_version 1.1` and the Upgrade/Connection headers).",
)
def proxy_rejected(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    Answers written by a proxy or CDN (`Server: nginx`, `cloudflare`, `Via`, `CF-RAY`, an HTML
    error page), recognised proxy pages (HAProxy's built-in pages, Apache's, Squid's
    `X-Squid-Error`, Caddy's empty 403/502, Envoy's texts: `_pages.py`) with what each means
    and the setting to change, 502/503/504 gateway errors, and bare 403s with no page and no
    Server header that no more specific rule explains (an application's refusal: uvicorn turns a
    Starlette app's close-before-accept into exactly that). For a gateway error, the proxy's own
    failed connection to its upstream is named when the capture has it (opened after the request
    came, before the error page).

    Why it is refused:
    xiaozhi-server never answers 401/403/404 on its WebSocket port, so such pages come from what
    is in front: access rules (nginx `deny`, HAProxy `http-request deny`, Apache `Require`,
    Squid `http_access`, whose stock config tunnels only to port 443), Cloudflare bot protection
    (the firmware sends no User-Agent), header size limits, or a proxy whose upstream is down
    (HAProxy 503 "No server is available", Apache 503, Caddy/nginx 502) or talks HTTP/1.0 to it.

    Example:
    `HTTP/1.1 503 Service Unavailable` + `No server is available to handle this request.` (HAProxy).

    Fix:
    The recognised page's own setting; else allow the device, start the upstream, forward the
    upgrade.

    References:
    xiaozhi-protocol.md §6 row 23; field-failures D1, D3, D5; captures/README.md (proxy captures).
    """
    req, resp = hs.request, hs.response
    if req is None or resp is None or resp.status < 400 or is_websockets_server(resp):
        return
    if "plain HTTP request was sent to HTTPS port" in body_text(resp):
        return
    page = proxy_page(resp)
    if page is not None and page.kind in ("tls-port", "no-route"):
        return  # plain-to-tls-port and wrong-path name these
    if gorilla_refusal(resp) or (tomcat_page(resp) and resp.status in (403, 404)):
        return  # the WebSocket server's own refusal: origin-rejected and the request rules say why
    proxy = page.proxy if page is not None else proxy_name(resp)
    server = server_header(resp).lower()
    upstream = _failed_upstream(hs, ctx) if resp.status in (502, 503, 504) else None
    if upstream is not None:
        t = upstream.transport
        how = (
            "was refused (RST): nothing listens there"
            if t.server_rst and not t.syn_ack
            else "got no answer (SYN unanswered)"
            if not t.syn_ack
            else "failed"
        )
        yield Hit(
            f"{proxy or 'the gateway'} answered {resp.status}: its own connection to {upstream.server} {how} "
            f"(tcp.stream {upstream.tcp_stream}, while this request waited)",
            evidence=describe_answer(resp),
            rank=15,
            fix=page.fix if page is not None else None,
        )
    elif page is not None:
        longest = longest_line(req, LONG_LINE) if page.kind in ("too-large", "bad-request") else None
        sized = longest is not None
        here = f"; here {longest}" if sized else ""
        status = f"{resp.status} {resp.reason}".strip()
        what = (
            f"refused to open a tunnel to {req.target} ({status})"
            if req.method.upper() == "CONNECT"
            else f"answered {status}"
        )
        yield Hit(
            f"{page.proxy} {what}: {page.meaning}{here}",
            evidence=describe_answer(resp),
            rank=10 if sized or page.kind == "too-large" else 15,
            fix=page.fix,
        )
    elif resp.status in (502, 504) and (up := _http10_upstream(hs, ctx)) is not None:
        yield Hit(
            f"{proxy or 'the gateway'} answered {resp.status}: it forwarded the request to {up.server} as "
            f"{up.request.version if up.request else 'HTTP/1.0'} (tcp.stream {up.tcp_stream}), which a "
            "WebSocket server drops without answering",
            evidence=describe_answer(resp),
            rank=15,
            fix="Set `proxy_http_version 1.1;`, `proxy_set_header Upgrade $http_upgrade;` and "
            '`proxy_set_header Connection "upgrade";` in the WebSocket location (the first alone gives '
            "a plain HTTP request).",
        )
    elif resp.status in (502, 504):
        why = (
            "or the proxy talks HTTP/1.0 to it (proxy_http_version 1.1 missing)"
            if proxy == "nginx"
            else "or it answered what the proxy could not read"
        )
        yield Hit(
            f"{proxy or 'the gateway'} answered {resp.status}: the upstream WebSocket server is down or "
            f"unreachable, {why}",
            evidence=describe_answer(resp),
            rank=15,
        )
    elif proxy is not None:
        extra = (
            "; Cloudflare bot protection blocks clients without a browser User-Agent"
            if (proxy == "cloudflare" and resp.status == 403)
            else ""
        )
        yield Hit(
            f"{proxy} refused the request with {resp.status} {resp.reason}{extra}",
            evidence=describe_answer(resp),
        )
    elif (asgi := asgi_server(resp)) is not None:
        said = _asgi_refusal(asgi, req, ctx.config.expect_path)
        yield Hit(said, evidence=describe_answer(resp), rank=45, fix=APP_FIX)
    elif resp.status in (401, 403) and body_text(resp).strip() == f"{resp.status}: {resp.reason}":
        yield Hit(
            f"aiohttp's own {resp.status} page: a handler raised `web.HTTP{resp.reason.replace(' ', '')}` "
            "before preparing the WebSocket; the application's check (auth, access) refused it",
            evidence=describe_answer(resp),
            rank=45,
            fix=APP_FIX,
        )
    elif resp.status == 403 and "uvicorn" not in server and _html_page(body_text(resp)):
        yield Hit(
            "a 403 HTML error page, typical of a proxy or WAF in front",
            evidence=describe_answer(resp),
            rank=45,
        )
    elif is_bare_403(resp):
        yield Hit(
            "a bare 403 (no page, no Server header): the application or a WAF refused the upgrade; "
            "Starlette/FastAPI answer this when the app closes before accept()",
            evidence=describe_answer(resp),
            rank=45,
        )


@rule(
    "WS305",
    "origin-rejected",
    Severity.ERROR,
    rank=10,
    title="The server refused the request's Origin",
    fix="Add the client's Origin to the server's allowed origins, stop sending Origin from devices "
    "(arduinoWebSockets sends `file://`), or make the proxy keep Host consistent with Origin.",
)
def origin_rejected(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A 403 (or a websockets 400 naming the header) to a request that carries `Origin`, when the
    body names Origin, the server is `websockets` (whose only 403 is the Origin check), or
    another non-proxy server answered a bare 403.

    Why it is refused:
    Servers with an allow-list (`websockets.serve(origins=…)`, Tornado's `check_origin`,
    Spring's `setAllowedOrigins`, Phoenix) answer 403 to unknown origins, `null` or `file://`.
    xiaozhi-server does not check Origin.

    Example:
    `Origin: http://evil.example` → `HTTP/1.1 403 Forbidden`,
    `Failed to open a WebSocket connection: invalid Origin header: http://evil.example.`

    Fix:
    Allow the origin on the server, or omit Origin from non-browser clients.

    References:
    RFC 6455 §4.2.1 (item 5), §10.2; field-failures B7.
    """
    req, resp = hs.request, hs.response
    if req is None or resp is None or resp.status not in (400, 403):
        return
    if not req.headers_named("origin"):
        if asgi_server(resp) == "daphne":
            yield Hit(
                "daphne answered 403 Access denied to a request without Origin: Channels' "
                "`AllowedHostsOriginValidator` (and `OriginValidator`) refuse a missing Origin, and "
                "devices send none",
                evidence="(no Origin header)",
                rank=40,
                fix="Send an Origin that ALLOWED_HOSTS lists, or route devices through a consumer "
                "without the origin validator.",
            )
        return
    ev = header_line(req, "Origin")
    said = ws_complaint(resp) or body_text(resp)
    if "origin" in said.lower() and "multiple values" not in said:
        yield Hit(f"the server refused the Origin: {said.strip()[:120]!r}", evidence=ev, rank=5)
    elif resp.status != 403 or proxy_name(resp) is not None:
        return
    elif is_websockets_server(resp):
        yield Hit("websockets answered 403: its only 403 is the Origin allow-list", evidence=ev)
    elif gorilla_refusal(resp):
        yield Hit(
            "Go's gorilla/websocket answered 403: its only 403 is `Upgrader.CheckOrigin` refusing the "
            "Origin (by default anything but the request's own host)",
            evidence=ev,
            rank=5,
        )
    elif tomcat_page(resp):
        yield Hit(
            "Tomcat answered its 403 page to the upgrade: the endpoint's "
            "`ServerEndpointConfig.Configurator.checkOrigin()` refused the Origin",
            evidence=ev,
            rank=8,
        )
    elif same_origin(req):
        return  # the page's own origin passes every default check: the refusal is something else
    elif "uvicorn" in server_header(resp).lower():
        path_ok = ctx.config.expect_path is not None and path_of(req) == ctx.config.expect_path
        if path_ok:
            yield Hit(
                "uvicorn/Starlette answered 403 on the expected path: the app refused the Origin (or closed "
                "before accept)",
                evidence=ev,
                rank=25,
            )
    elif not _html_page(body_text(resp)):
        yield Hit("a bare 403 to a request with Origin: most likely an Origin check", evidence=ev, rank=44)


@rule(
    "WS306",
    "subprotocol-mismatch",
    Severity.ERROR,
    rank=10,
    title="Sec-WebSocket-Protocol offered and answered do not agree",
    fix="Offer a subprotocol the server supports (or none); make the server echo one of the offered ones.",
)
def subprotocol_mismatch(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The client offered `Sec-WebSocket-Protocol` and the 101 selects none or one not offered; the
    101 selects one although none was offered; or a 400/403/426 body names the subprotocol.

    Why it is refused:
    RFC 6455 makes the client fail the connection when the server selects a protocol it did not
    offer; browsers (Chromium) also fail when they offered one and none comes back. Servers with a
    fixed list refuse unknown offers (Ratchet 426, websockets 400). The ESP32 firmware and
    arduinoWebSockets do not check the answer, so they may go on regardless.

    Example:
    `Sec-WebSocket-Protocol: arduino` → 101 without `Sec-WebSocket-Protocol`.

    Fix:
    Match the subprotocol lists on both sides.

    References:
    RFC 6455 §4.1 (item 10), §4.2.2, §11.3.4; field-failures B6.
    """
    req, resp = hs.request, hs.response
    if req is None or resp is None:
        return
    offered = tokens(req, "sec-websocket-protocol")
    chosen = (resp.header("sec-websocket-protocol") or "").strip()
    ev = f"{header_line(req, 'Sec-WebSocket-Protocol')} → {header_line(resp, 'Sec-WebSocket-Protocol')}"
    if resp.status != 101:
        said = (ws_complaint(resp) or body_text(resp)).lower()
        if resp.status in (400, 403, 426) and ("subprotocol" in said or "sec-websocket-protocol" in said):
            yield Hit(
                f"the server refused the offered subprotocol(s) {offered}: {describe_answer(resp)}",
                evidence=ev,
            )
        return
    if chosen and chosen.lower() not in offered:
        yield Hit(
            f"the 101 selects subprotocol {chosen!r}, which the client did not offer: the client must fail",
            evidence=ev,
        )
    elif offered and not chosen:
        browser = "mozilla" in (req.header("user-agent") or "").lower()  # Origin alone: arduino, apps
        client_failed = any(
            f.direction == "client" and f.opcode == Opcode.CLOSE and f.close_code in (1002, 1006)
            for f in hs.frames
        )
        t = hs.transport
        dropped = (  # hung up at once without a frame: the client library refused the 101
            t.closed_by == "client"
            and resp.ts_ns
            and 0 <= t.closed_ns - resp.ts_ns <= DROPPED_AT_ONCE_NS
            and not any(f.direction == "client" for f in hs.frames)
        )
        if dropped:
            yield Hit(
                f"the client offered {offered}, the 101 selects none, and the client closed "
                f"{(t.closed_ns - resp.ts_ns) / 1e6:.1f} ms later without a frame: it refused the answer "
                "(Node `ws`: \"Server sent no subprotocol\"; browsers do the same)",
                evidence=ev,
                rank=10,
            )
        elif browser or client_failed:
            yield Hit(
                f"the client offered {offered} and the 101 selects none: browsers fail the connection",
                evidence=ev,
                rank=20,
            )
        else:
            yield Hit(
                f"the client offered {offered} and the 101 selects none (browsers would fail; this client "
                "may not check)",
                evidence=ev,
                severity=Severity.WARNING,
                rank=60,
            )


@rule(
    "WS307",
    "bad-websocket-accept",
    Severity.ERROR,
    rank=15,
    title="The 101's Sec-WebSocket-Accept is missing or wrong",
    fix="Fix the server or the proxy that rewrites the 101 (the value must be "
    "base64(SHA-1(key + 258EAFA5-E914-47DA-95CA-C5AB0DC85B11))).",
)
def bad_websocket_accept(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A 101 whose `Sec-WebSocket-Accept` is absent or differs from the value computed from the
    request's `Sec-WebSocket-Key`.

    Why it is refused:
    RFC 6455 makes the client fail the connection; browsers and most libraries do. The ESP32
    firmware does **not** check it (it only looks for `HTTP/1.1 101`), so the device may work with a
    server that other clients refuse; it is reported as a warning when the conversation went on.

    Example:
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==` → `Sec-WebSocket-Accept: abc=`
    (expected `s3pPLMBiTxaQ9kYGzzhZRbK+xOo=`).

    Fix:
    Use a conforming server; make sure no proxy rewrites the 101.

    References:
    RFC 6455 §4.1 (item 4 of the response checks), §4.2.2 (step 5.4); xiaozhi-protocol.md §3.4.
    """
    req, resp = hs.request, hs.response
    if req is None or resp is None or resp.status != 101:
        return
    keys = req.headers_named("sec-websocket-key")
    if len(keys) != 1 or not valid_key(keys[0]):
        return
    got, want = (resp.header("sec-websocket-accept") or "").strip(), accept_for(keys[0])
    if got == want:
        return
    what = "missing" if not got else f"{got!r}, expected {want!r}"
    went_on = any(f.direction == "server" and f.opcode == Opcode.TEXT for f in hs.frames) and any(
        f.direction == "client" and f.opcode in (Opcode.TEXT, Opcode.BINARY) for f in hs.frames
    )
    if went_on:
        yield Hit(
            f"Sec-WebSocket-Accept is {what}; this client went on (the ESP32 firmware does not check it), "
            "browsers and most libraries would fail",
            evidence=header_line(resp, "Sec-WebSocket-Accept"),
            severity=Severity.WARNING,
            rank=60,
        )
    else:
        yield Hit(
            f"Sec-WebSocket-Accept is {what}: browsers and most clients fail the connection "
            "(the ESP32 firmware does not check it)",
            evidence=header_line(resp, "Sec-WebSocket-Accept"),
        )


STATUS_HINTS = {
    400: "the server found the request malformed; compare it header by header with a client that works",
    405: "the method is not allowed: a WebSocket upgrade must be a GET",
    408: "the request took too long to arrive: the client wrote it slowly or only in part",
    413: "the request (or its body) is too large for the server",
    414: "the request target is too long (a long query string?)",
    429: "rate limited: the client reconnects too often; back off between attempts",
    431: "the header block is too large (a huge token or cookie?)",
    500: "the server's handler raised an error: its log says which",
    501: "the server does not implement this (an HTTP/1.0 or non-WebSocket server?)",
    502: "a proxy could not get an answer from its upstream: the backend is down or answered garbage",
    503: "the server is overloaded, starting or shutting down (websockets: `Server is shutting down`)",
    504: "a proxy timed out waiting for its upstream",
    505: "the HTTP version is not supported: send HTTP/1.1",
}


@rule(
    "WS399",
    "unexplained-rejection",
    Severity.ERROR,
    rank=99,
    title="The server refused the upgrade and no other rule recognised why",
    fix="Read the answer's body and the server's log; report the capture so a rule can learn it.",
)
def unexplained_rejection(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A non-101 answer (or client bytes that are neither HTTP nor TLS) that no other rule
    explains. The engine keeps this finding only when no other rule found an error.

    Why it is refused:
    Unknown: the status and body are quoted so that a human can judge.

    Example:
    `HTTP/1.1 418 I'm a teapot`

    Fix:
    Look at the server's documentation and log for that status.

    References:
    RFC 6455 §4.1; RFC 9110 §15.
    """
    resp = hs.response
    if (
        hs.request is not None
        and resp is not None
        and resp.status != 101
        and is_websocket_attempt(hs.request)
    ):
        hint = STATUS_HINTS.get(resp.status)
        yield Hit(
            f"the server answered {describe_answer(resp)}" + (f": {hint}" if hint else ""),
            evidence=describe_answer(resp),
        )
    elif hs.request is None and hs.transport.client_payload == Payload.OTHER:
        yield Hit("the client's first bytes are neither HTTP nor TLS", evidence="client bytes not HTTP")


# What a server's Close code says went wrong in the session (RFC 6455 §7.4.1)
ERROR_CLOSES = {
    1002: "a protocol error in the client's frames (unmasked, bad opcode or length, reserved bits)",
    1003: "a kind of data it does not accept (text where it wants binary, or the reverse)",
    1007: "data that does not match the message type (text that is not UTF-8, JSON it rejects)",
    1008: "something its policy refuses",
    1009: "a message larger than it accepts (Node ws `maxPayload`, websockets `max_size`: 1 MiB, "
    "gorilla `SetReadLimit`, Tomcat's 8 KiB message buffer, ESP-IDF's buffer)",
    1010: "no extension it requires",
}
AFTER_DATA_ONLY = frozenset({1002, 1003, 1007, 1009, 1010})  # before any data these are other rules' story


@rule(
    "WS308",
    "closed-with-error",
    Severity.WARNING,
    rank=70,
    title="After the upgrade the server ended the session with an error close code (1002, 1003, 1007, 1009…)",
    fix="Make the client send what the close code asks for: smaller messages (or raise the server's "
    "limit), the data type the server expects, valid UTF-8 text, masked frames.",
)
def closed_with_error(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The server's Close frame carries 1002, 1003, 1007, 1008, 1009 or 1010 after the client sent
    data: the handshake worked, then the session broke on the client's message (the message's
    size counts all its fragments). A 1008 right after the upgrade whose reason is not about
    credentials (those are auth-failed-after-upgrade's) is a policy refusal, an error.

    Why it is refused:
    A server checks each message against its limits and rules: Node `ws` closes with 1009 over
    `maxPayload`, `websockets` over `max_size` (1 MiB), any server with 1002 on an unmasked
    client frame and 1007 on text that is not UTF-8. The device then sees its connection close
    "after the first message".

    Example:
    101, client binary frame of 2 MB, server Close 1009 `Max payload size exceeded`.

    Fix:
    Match the client's messages to the server's limits and expectations.

    References:
    RFC 6455 §5.1, §7.4.1, §10.4; field-failures (sessions that break after the handshake).
    """
    if hs.response is None or hs.response.status != 101:
        return
    message = 0  # bytes of the client's last message, its fragments added up
    for f in hs.frames:
        if f.direction == "client" and f.opcode in (Opcode.TEXT, Opcode.BINARY):
            message = f.length
        elif f.direction == "client" and f.opcode == Opcode.CONTINUATION:
            message += f.length
        elif f.direction == "client" and f.opcode == Opcode.CLOSE:
            return  # the client ended it: the server's Close is its echo
        elif f.direction == "server" and f.opcode == Opcode.CLOSE and f.close_code in ERROR_CLOSES:
            reason = f" {f.close_reason!r}" if f.close_reason else ""
            if message:
                yield Hit(
                    f"the server closed with {f.close_code}{reason} after the client's {message:,}-byte "
                    f"message: it received {ERROR_CLOSES[f.close_code]}",
                    evidence=f"Close {f.close_code}" + frame_ref(f),
                )
            elif f.close_code not in AFTER_DATA_ONLY and not ctx.xiaozhi:
                yield Hit(  # auth-failed-after-upgrade speaks when the reason is about credentials
                    f"the server closed with {f.close_code}{reason} right after the upgrade: it accepted "
                    "the connection, then its policy refused the client",
                    evidence=f"Close {f.close_code}" + frame_ref(f),
                    severity=Severity.ERROR,
                    rank=60,
                )
            return


RULES = (
    redirect,
    server_is_running_page,
    wrong_service,
    proxy_rejected,
    origin_rejected,
    subprotocol_mismatch,
    bad_websocket_accept,
    closed_with_error,
    unexplained_rejection,
)
FALLBACK_CODES = frozenset({"WS399"})
