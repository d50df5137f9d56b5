"""WS3xx: answers read past the status line."""

from __future__ import annotations

from typing import Any

import pytest
from factories import (
    CLIENT_HELLO,
    KEY,
    cause,
    close,
    diag,
    good_transport,
    make_handshake,
    make_request,
    make_response,
    names,
    server_is_running,
    switching,
    text,
    ws_failure,
)

from analyzer.config import Config
from analyzer.model import HttpRequest, HttpResponse, Severity

BROWSER = [
    ("Host", "example.com"),
    ("Connection", "Upgrade"),
    ("Upgrade", "websocket"),
    ("Sec-WebSocket-Key", KEY),
    ("Sec-WebSocket-Version", "13"),
    ("Origin", "https://example.com"),
    ("User-Agent", "Mozilla/5.0"),
    ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
]


def browser(**kw: Any) -> HttpRequest:
    return make_request(target="/chat", headers=BROWSER, **kw)


def test_redirect_to_https_says_use_wss() -> None:
    """308 to https://: redirect, suggesting wss://."""
    resp = make_response(308, "", server="Caddy", headers=[("Location", "https://example.com/xiaozhi/v1/")])
    d = diag(make_handshake(response=resp))
    assert cause(d) == "redirect"
    assert d.cause is not None and "wss://" in d.cause.message


def test_101_is_not_redirect() -> None:
    """A 101 gets no redirect."""
    assert "redirect" not in names(diag(make_handshake()))


def test_plain_get_server_running_is_page() -> None:
    """A plain GET (browser/curl, no WebSocket header) answered by the page: server-is-running-page."""
    req = make_request(
        headers=[("Host", "192.168.1.10:8000"), ("User-Agent", "curl/8.5.0"), ("Accept", "*/*")]
    )
    assert cause(diag(make_handshake(req, server_is_running()))) == "server-is-running-page"


def test_proxy_leg_without_upgrade_headers_is_missing_upgrade_headers() -> None:
    """Proxy→server leg (HTTP/1.0, Connection: close, no Upgrade) + page: missing-upgrade-headers."""
    req = make_request(
        version="HTTP/1.0",
        set_headers={"Connection": "close", "Upgrade": None},
        add_headers=[("X-Forwarded-For", "192.168.1.23")],
    )
    d = diag(make_handshake(req, server_is_running()))
    assert cause(d) == "missing-upgrade-headers"
    assert "server-is-running-page" in names(d, "error")


def test_page_relayed_by_nginx_blames_lost_upgrade_headers() -> None:
    """The client's request is fine, nginx relays the page: the proxy lost the upgrade headers."""
    d = diag(make_handshake(response=server_is_running(server="nginx/1.22.1")))
    assert cause(d) == "missing-upgrade-headers"
    assert d.cause is not None and "nginx" in d.cause.message
    assert "proxy-rejected" not in names(d)


def test_other_200_is_not_server_running_page() -> None:
    """A 200 JSON is not the page."""
    resp = make_response(200, '{"code":401,"msg":"未授权"}', server=None)
    assert "server-is-running-page" not in names(diag(make_handshake(response=resp)))


def test_manager_api_json_401_is_wrong_service() -> None:
    """200 + {"code":401} on :8002: wrong-service naming the manager-api."""
    from analyzer.model import Endpoint

    resp = make_response(200, '{"code":401,"msg":"未授权"}', server=None)
    d = diag(make_handshake(response=resp, server=Endpoint("192.168.1.10", 8002)))
    assert cause(d) == "wrong-service"
    assert d.cause is not None and "manager-api" in d.cause.message


def test_aiohttp_404_is_wrong_service_first() -> None:
    """aiohttp's 404 (port 8003): wrong-service before wrong-path."""
    resp = make_response(404, "404: Not Found", server="Python/3.10 aiohttp/3.9.5")
    d = diag(make_handshake(response=resp))
    assert names(d, "error")[:2] == ["wrong-service", "wrong-path"]


def test_expect_port_mismatch() -> None:
    """--expect-port 8000 and a failed connection to 8080: wrong-service."""
    from analyzer.model import Endpoint

    hs = make_handshake(response=make_response(400, "bad", server="x"), server=Endpoint("192.168.1.10", 8080))
    assert "wrong-service" in names(diag(hs, Config(expect_port=8000)), "error")


def test_101_is_not_wrong_service() -> None:
    """The good handshake is the right service."""
    assert "wrong-service" not in names(diag(make_handshake()))


def test_nginx_403_is_proxy_rejected() -> None:
    """nginx's 403 page: proxy-rejected."""
    resp = make_response(
        403,
        "<html><center><h1>403 Forbidden</h1></center><center>nginx</center></html>",
        server="nginx/1.22.1",
    )
    assert cause(diag(make_handshake(response=resp))) == "proxy-rejected"


def test_cloudflare_403_mentions_bot_protection() -> None:
    """Cloudflare 403: proxy-rejected with the bot-protection hint."""
    resp = make_response(
        403,
        "<html>Attention Required! | Cloudflare</html>",
        server="cloudflare",
        headers=[("CF-RAY", "8a1b2c3d4e5f-FRA")],
    )
    d = diag(make_handshake(response=resp))
    assert cause(d) == "proxy-rejected"
    assert d.cause is not None and "User-Agent" in d.cause.message


def test_502_is_proxy_rejected() -> None:
    """nginx 502: proxy-rejected (upstream down / HTTP/1.0 upstream)."""
    resp = make_response(502, "<html><center>nginx</center></html>", server="nginx")
    d = diag(make_handshake(response=resp))
    assert cause(d) == "proxy-rejected"
    assert d.cause is not None and "proxy_http_version" in d.cause.message


def test_websockets_400_is_not_proxy_rejected() -> None:
    """The library's own answers are not a proxy's."""
    req = make_request(set_headers={"Sec-WebSocket-Version": "8"})
    assert "proxy-rejected" not in names(
        diag(make_handshake(req, ws_failure(400, "invalid Sec-WebSocket-Version header: 8")))
    )


def test_websockets_origin_403_is_origin_rejected() -> None:
    """websockets(origins=…) 403 naming the Origin: origin-rejected."""
    resp = ws_failure(403, "invalid Origin header: https://example.com")
    d = diag(make_handshake(browser(), resp))
    assert cause(d) == "origin-rejected"


def test_bare_403_with_origin_from_app_is_origin_rejected() -> None:
    """A bare 403 (Tornado) to a request from another site's page: origin-rejected."""
    resp = make_response(403, "", server="TornadoServer/6.4")
    foreign = browser(set_headers={"Origin": "https://evil.example"})
    assert cause(diag(make_handshake(foreign, resp))) == "origin-rejected"


@pytest.mark.parametrize(
    ("host", "origin"),
    [("example.com", "https://example.com"), ("127.0.0.1:8000", "http://127.0.0.1:8000"), ("[::1]:80", "http://[::1]")],
)
def test_bare_403_to_same_origin_page_is_not_blamed_on_origin(host: str, origin: str) -> None:
    """The page's own origin passes every default Origin check (Tornado's, Channels', ws'): a
    bare 403 to it is something else (the app's auth, a route)."""
    resp = make_response(403, "", server="TornadoServer/6.4")
    req = browser(set_headers={"Host": host, "Origin": origin})
    assert "origin-rejected" not in names(diag(make_handshake(req, resp)))


def test_origin_on_101_is_fine() -> None:
    """Origin + 101: nothing."""
    d = diag(make_handshake(browser(), switching(), frames=()))
    assert d.findings == ()


def test_offered_subprotocol_not_echoed_to_browser_is_error() -> None:
    """Browser offered `chat`, 101 has no Sec-WebSocket-Protocol: subprotocol-mismatch error."""
    req = browser(add_headers=[("Sec-WebSocket-Protocol", "chat")])
    d = diag(make_handshake(req, switching(), frames=()))
    assert cause(d) == "subprotocol-mismatch"


def test_arduino_subprotocol_not_echoed_is_warning() -> None:
    """arduinoWebSockets' `arduino` offer not echoed, client does not check: warning."""
    req = make_request(add_headers=[("Sec-WebSocket-Protocol", "arduino")])
    d = diag(make_handshake(req))
    assert cause(d) is None and "subprotocol-mismatch" in names(d, "warning")


def test_selected_subprotocol_not_offered_is_error() -> None:
    """101 selects a protocol nobody offered: subprotocol-mismatch."""
    resp = switching(extra=[("Sec-WebSocket-Protocol", "mqtt")])
    assert cause(diag(make_handshake(response=resp))) == "subprotocol-mismatch"


def test_echoed_subprotocol_is_fine() -> None:
    """Offered and echoed: nothing."""
    req = browser(add_headers=[("Sec-WebSocket-Protocol", "chat, superchat")])
    resp = switching(extra=[("Sec-WebSocket-Protocol", "chat")])
    assert diag(make_handshake(req, resp, frames=())).findings == ()


def test_wrong_accept_is_bad_websocket_accept() -> None:
    """A wrong Sec-WebSocket-Accept on a 101: bad-websocket-accept, and the ESP32 note."""
    d = diag(make_handshake(response=switching(accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA="), frames=()))
    assert cause(d) == "bad-websocket-accept"
    assert d.cause is not None and "ESP32" in d.cause.message


def test_wrong_accept_but_conversation_went_on_is_warning() -> None:
    """The ESP32 ignores the accept: when hellos were exchanged it is only a warning."""
    frames = (
        text("client", CLIENT_HELLO, 3),
        text("server", {"type": "hello", "transport": "websocket"}, 40),
    )
    d = diag(make_handshake(response=switching(accept="AAAAAAAAAAAAAAAAAAAAAAAAAAA="), frames=frames))
    assert cause(d) is None
    assert [f.severity for f in d.findings] == [Severity.WARNING]


def test_right_accept_is_fine() -> None:
    """RFC 6455's sample key/accept pair."""
    assert "bad-websocket-accept" not in names(diag(make_handshake()))


def test_unrecognised_status_gets_fallback_cause() -> None:
    """A 418 nobody explains: unexplained-rejection."""
    d = diag(make_handshake(response=make_response(418, "teapot", server="teapotd")))
    assert cause(d) == "unexplained-rejection"


def test_fallback_dropped_when_another_error_explains() -> None:
    """The fallback disappears as soon as a real rule names the cause."""
    d = diag(make_handshake(response=make_response(404, "nope", server="x")))
    assert "unexplained-rejection" not in names(d)


def test_close_1000_after_101_without_text_generic_is_warning_only() -> None:
    """A generic server closing at once (1000): not a failure outside the xiaozhi profile."""
    req = browser()
    d = diag(
        make_handshake(req, switching(), frames=(close("server", 1000, ms=1),)), Config(profile="rfc6455")
    )
    assert cause(d) is None


def test_bare_403_on_xiaozhi_path_is_wrong_path() -> None:
    """uvicorn's bare 403 (no Server header) to /xiaozhi/v1/: another app, no such route: wrong-path."""
    resp = make_response(403, "", server=None, headers=[("Content-Type", "text/plain; charset=utf-8")])
    assert cause(diag(make_handshake(response=resp))) == "wrong-path"


def test_bare_403_on_other_path_is_proxy_rejected() -> None:
    """A bare 403 on a non-xiaozhi path (app closed before accept): proxy-rejected, hedged."""
    resp = make_response(403, "", server=None)
    d = diag(make_handshake(make_request(target="/ws-closed"), resp))
    assert cause(d) == "proxy-rejected"
    assert d.cause is not None and "accept()" in d.cause.message


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (
            (("content-type", "text/html"),),
            b"<html><body><h1>403 Forbidden</h1>\n"
            b"Request forbidden by administrative rules.\n</body></html>\n",
        ),
        ((("x-envoy-upstream-service-time", "1"),), b"RBAC: access denied"),
        ((("X-Amz-Cf-Id", "abc"),), b"<HTML><BODY>Request blocked.</BODY></HTML>"),
    ],
)
def test_proxies_without_a_server_header_are_still_recognised(
    headers: tuple[tuple[str, str], ...], body: bytes
) -> None:
    """HAProxy's 403 page, Envoy's RBAC denial, CloudFront: the answer came from a front."""
    resp = HttpResponse("HTTP/1.1", 403, "Forbidden", headers, body)
    d = diag(make_handshake(response=resp, transport=good_transport()))
    assert cause(d) == "proxy-rejected"


def test_node_engine_io_transport_unknown_is_a_socketio_server() -> None:
    """Node's engine.io answers a plain WebSocket client 400 {"code":0,"message":"Transport unknown"}."""
    body = b'{"code":0,"message":"Transport unknown"}'
    resp = HttpResponse("HTTP/1.1", 400, "Bad Request", (("Content-Type", "application/json"),), body)
    d = diag(make_handshake(make_request(target="/chat"), response=resp, transport=good_transport()))
    assert cause(d) == "wrong-service"
    assert d.cause is not None and "Socket.IO" in d.cause.message


def test_unrecognised_status_still_gets_its_meaning() -> None:
    """The fallback quotes the answer and says what the status means (here 503)."""
    resp = make_response(503, b"busy", server="gunicorn")
    d = diag(make_handshake(response=resp))
    assert cause(d) == "unexplained-rejection"
    assert d.cause is not None and "overloaded" in d.cause.message


@pytest.mark.parametrize(
    ("status", "body", "server", "expected", "words"),
    [
        (
            400,
            "<center>Request Header Or Cookie Too Large</center><center>nginx</center>",
            "nginx",
            "proxy-rejected",
            "large_client_header_buffers",
        ),
        (503, "no healthy upstream", "envoy", "proxy-rejected", "no host of the upstream cluster is healthy"),
        (
            503,
            "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            None,
            "proxy-rejected",
            "connection to the upstream failed",
        ),
        (404, "404 page not found\n", None, "wrong-path", "no handler or router matches"),
        (
            400,
            "Reason: You're speaking plain HTTP to an SSL-enabled server port.",
            "Apache/2.4.71",
            "plain-to-tls-port",
            "TLS port",
        ),
    ],
)
def test_proxy_pages_from_their_source_strings(
    status: int, body: str, server: str | None, expected: str, words: str
) -> None:
    """Proxy answers not in the recorded captures, from each product's fixed strings: the page
    names what happened in that product's terms."""
    d = diag(make_handshake(response=make_response(status, body, server=server)))
    assert cause(d) == expected
    assert d.cause is not None and words in d.cause.message


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ([("Cookie", "session=abc123")], "the `Cookie` header"),
        ([("Sec-WebSocket-Protocol", "Bearer, eyJhbGciOiJIUzI1NiJ9.e30.sig")], "Sec-WebSocket-Protocol"),
    ],
)
def test_401_to_a_credential_outside_authorization_is_token_rejected(
    extra: list[tuple[str, str]], where: str
) -> None:
    """A browser cannot send Authorization; a 401 to its cookie or subprotocol token is the
    credential refused, not a missing one."""
    req = browser(add_headers=extra)
    d = diag(make_handshake(req, make_response(401, "Unauthorized", server=None)))
    assert cause(d) == "token-rejected"
    assert d.cause is not None and where in d.cause.message


def test_401_to_a_browser_without_credential_says_browsers_cannot_set_headers() -> None:
    challenge = [("WWW-Authenticate", 'Bearer realm="x"')]
    d = diag(make_handshake(browser(), make_response(401, "", server=None, headers=challenge)))
    assert cause(d) == "missing-token"
    assert d.cause is not None and 'WWW-Authenticate: Bearer realm="x"' in d.cause.message
    assert d.cause.fix is not None and "query" in d.cause.fix
