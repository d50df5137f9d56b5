"""What a proxy's own answer means, and the setting that changes it.

Reverse and forward proxies refuse with fixed, recognisable answers: HAProxy's built-in pages
(no `Server` header), Apache's and nginx's error pages, Squid's `X-Squid-Error` code, Caddy's
empty bodies, Envoy's and Go's plain-text lines. Each says more than its status code: HAProxy's
503 means no server is up in the chosen backend, Apache's 503 that mod_proxy could not connect,
Squid's 403 on a CONNECT that its stock `SSL_ports` rule allows tunnels to 443 only. Every entry
here was read off a real capture of that software (see captures/README.md) or its source's fixed
strings, and names what to change in that product's own terms.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from analyzer.model import HttpResponse


@dataclass(frozen=True, slots=True)
class ProxyPage:
    """One recognised answer. `kind` groups meanings across products for the rules:
    denied, no-backend, backend-refused, bad-gateway, timeout, too-large, bad-request, no-route,
    unsupported, not-a-proxy-request, tls-port, client-cert."""

    proxy: str
    kind: str
    meaning: str
    fix: str


def _page(proxy: str, kind: str, meaning: str, fix: str) -> ProxyPage:
    return ProxyPage(proxy, kind, meaning, fix)


# (status or 0 for any, text in the lower-cased body, page). Checked in order, first match wins.
_HAPROXY = (
    (
        503,
        "no server is available to handle this request",
        _page(
            "HAProxy",
            "no-backend",
            "no server is up in the backend this request was routed to (all down or failing their "
            "health check), or no backend matched it (no `use_backend` rule and no `default_backend`)",
            "Start the backend server and check its `server` line and health check; route this path with "
            "`use_backend` or set a `default_backend`.",
        ),
    ),
    (
        403,
        "request forbidden by administrative rules",
        _page(
            "HAProxy",
            "denied",
            "an `http-request deny` rule (or an ACL) refused it",
            "Change the `http-request deny` rule or ACL that matches this request.",
        ),
    ),
    (
        400,
        "your browser sent an invalid request",
        _page(
            "HAProxy",
            "bad-request",
            "it could not parse the request, or the request head did not fit its buffer "
            "(`tune.bufsize`, 16 KB by default, holds the whole head)",
            "Check the request line and header syntax; shorten the head (tokens, cookies) or raise "
            "`tune.bufsize`.",
        ),
    ),
    (
        502,
        "the server returned an invalid or incomplete response",
        _page(
            "HAProxy",
            "bad-gateway",
            "the backend's answer was not valid HTTP, or it closed without answering",
            "Check that the backend speaks HTTP/1.1 on that port (not TLS, not another protocol).",
        ),
    ),
    (
        504,
        "the server didn't respond in time",
        _page(
            "HAProxy",
            "timeout",
            "the backend did not answer within `timeout server`",
            "Check why the backend is slow or silent; raise `timeout server` if it is only slow.",
        ),
    ),
    (
        408,
        "your browser didn't send a complete request in time",
        _page(
            "HAProxy",
            "bad-request",
            "the request head was not complete within `timeout http-request`",
            "Send the whole request at once (the head must end with an empty line).",
        ),
    ),
)
_APACHE = (
    (
        403,
        "you don't have permission to access this resource",
        _page(
            "Apache",
            "denied",
            "a `Require` rule (or file permissions) refused it",
            "Allow the location for the device: `Require all granted` or its address in `Require ip`.",
        ),
    ),
    (
        503,
        "temporarily unable to service your",
        _page(
            "Apache",
            "backend-refused",
            "mod_proxy could not connect to the `ProxyPass` backend (down, refused, wrong address); "
            "Apache then keeps it in error for `retry` seconds (60 by default)",
            "Start the backend and check the `ProxyPass` address; `retry=0` on the ProxyPass line makes "
            "Apache try again at once.",
        ),
    ),
    (
        502,
        "received an invalid response from an upstream server",
        _page(
            "Apache",
            "bad-gateway",
            "the backend's answer was not valid HTTP, or it closed without answering",
            "Check that the backend speaks HTTP/1.1 on the `ProxyPass` port.",
        ),
    ),
    (
        400,
        "size of a request header field exceeds server limit",
        _page(
            "Apache",
            "too-large",
            "a header line is longer than `LimitRequestFieldSize` (8190 bytes by default)",
            "Shorten the header (a long token or cookie), or raise `LimitRequestFieldSize`.",
        ),
    ),
    (
        400,
        "number of request header fields exceeds server limit",
        _page(
            "Apache",
            "too-large",
            "the request has more headers than `LimitRequestFields` (100 by default)",
            "Send fewer headers, or raise `LimitRequestFields`.",
        ),
    ),
    (
        400,
        "speaking plain http to an ssl-enabled server port",
        _page(
            "Apache",
            "tls-port",
            "a plain HTTP request reached its TLS port",
            "Use wss:// on this port.",
        ),
    ),
)
_NGINX = (
    (
        400,
        "no required ssl certificate was sent",
        _page(
            "nginx",
            "client-cert",
            "it requires a client certificate (`ssl_verify_client on`) and the client sent none",
            "Give the client a certificate signed by the CA in `ssl_client_certificate` (ESP-IDF: "
            "`client_cert`/`client_key`), or set `ssl_verify_client optional`.",
        ),
    ),
    (
        400,
        "the ssl certificate error",
        _page(
            "nginx",
            "client-cert",
            "the client certificate failed its check against `ssl_client_certificate` (unknown CA, expired)",
            "Give the client a valid certificate from the CA nginx trusts for clients.",
        ),
    ),
    (
        400,
        "request header or cookie too large",
        _page(
            "nginx",
            "too-large",
            "a header line is longer than a `large_client_header_buffers` buffer (8 KB by default)",
            "Shorten the header (a long token or cookie), or raise `large_client_header_buffers`.",
        ),
    ),
    (
        413,
        "request entity too large",
        _page(
            "nginx",
            "too-large",
            "the request body is larger than `client_max_body_size`",
            "An upgrade request has no body: remove it (or raise `client_max_body_size`).",
        ),
    ),
)
_ENVOY = (
    (
        503,
        "no healthy upstream",
        _page(
            "Envoy",
            "no-backend",
            "no host of the upstream cluster is healthy",
            "Start the backend and check the cluster's endpoints and health check.",
        ),
    ),
    (
        503,
        "upstream connect error or disconnect/reset before headers",
        _page(
            "Envoy",
            "backend-refused",
            "its connection to the upstream failed or was reset before an answer",
            "Start the backend and check the cluster address; enable `upgrade_configs: websocket` on the "
            "route.",
        ),
    ),
)
_GO = (
    (
        400,
        "client sent an http request to an https server",
        _page(
            "a Go server (Caddy, Traefik…)",
            "tls-port",
            "a plain HTTP request reached its TLS port",
            "Use wss:// on this port.",
        ),
    ),
    (
        404,
        "404 page not found",
        _page(
            "a Go server (net/http's ServeMux, Traefik, Caddy…)",
            "no-route",
            "no handler or router matches this host and path",
            "Register a handler for this path (`http.HandleFunc(\"/ws\", …)`; Traefik: a router rule "
            "`PathPrefix(...)`), or use the routed path.",
        ),
    ),
)

_CADDY_EMPTY = {  # Caddy's answers carry no body
    502: _page(
        "Caddy",
        "backend-refused",
        "its `reverse_proxy` could not reach the upstream (refused, down, wrong address)",
        "Start the backend and check the `reverse_proxy` address.",
    ),
    200: _page(
        "Caddy",
        "no-route",
        "Caddy answers an empty 200 when no route handles the request's host and path",
        "Add a route for this path (`reverse_proxy /xiaozhi/v1/* backend:8000`), or use the path Caddy "
        "routes.",
    ),
    403: _page(
        "Caddy",
        "denied",
        "a `respond 403` (or `error`) matcher in the Caddyfile refused it",
        "Change the matcher that refuses this request.",
    ),
}
_SQUID = {
    "ERR_ACCESS_DENIED": _page(
        "Squid",
        "denied",
        "its `http_access` rules refused it; the stock squid.conf allows CONNECT tunnels only to port 443 "
        "(`http_access deny CONNECT !SSL_ports`)",
        "Allow the WebSocket port: `acl SSL_ports port 443 8000` (or an `http_access allow` rule for the "
        "device), or use wss:// on 443.",
    ),
    "ERR_UNSUP_REQ": _page(
        "Squid",
        "unsupported",
        "it does not forward this request: a `ws://` URL in the request line is not a scheme it proxies",
        "Have the client open a CONNECT tunnel (browsers do), or send the URL as http:// with Squid's "
        "`http_upgrade_request_protocols websocket allow all`.",
    ),
    "ERR_INVALID_URL": _page(
        "Squid",
        "not-a-proxy-request",
        "the request line has a path only (`GET /path`): the client treats the forward proxy as the "
        "WebSocket server",
        "Connect to the WebSocket server itself, or set the proxy as the client's proxy (it then sends "
        "CONNECT host:port).",
    ),
    "ERR_DNS_FAIL": _page(
        "Squid",
        "backend-refused",
        "it could not resolve the server's host name",
        "Use a host name the proxy can resolve (or an address).",
    ),
    "ERR_READ_TIMEOUT": _page(
        "Squid",
        "timeout",
        "the server did not answer in time",
        "Check why the server is silent; raise `read_timeout` if it is only slow.",
    ),
}


def _squid(resp: HttpResponse) -> ProxyPage | None:
    value = resp.header("x-squid-error")
    if not value:
        return None
    code, _, detail = value.strip().partition(" ")
    if code == "ERR_CONNECT_FAIL":
        errno_text = _errno_text(detail)
        return _page(
            "Squid",
            "backend-refused",
            f"it could not connect to the server{errno_text}",
            "Start the WebSocket server, or fix the host and port the client asks the proxy for.",
        )
    known = _SQUID.get(code)
    if known is not None:
        return known
    return _page(
        "Squid",
        "bad-request",
        f"it refused the request ({code[:40]})",
        "See Squid's page for this code.",
    )


def _errno_text(detail: str) -> str:
    number = detail.strip()
    if not number.isdigit() or len(number) > 4:
        return ""
    return f": {os.strerror(int(number)).lower()} (errno {number})"


def proxy_page(resp: HttpResponse) -> ProxyPage | None:
    """The recognised proxy answer `resp` is, if it is one (see the module docstring)."""
    squid = _squid(resp)
    if squid is not None:
        return squid
    server = (resp.header("server") or "").lower()
    body = resp.body[:2048].decode("utf-8", "replace").lower()
    if server.startswith("caddy") and not body.strip() and resp.status in _CADDY_EMPTY:
        return _CADDY_EMPTY[resp.status]
    tables = (
        (_HAPROXY, not server),
        (_APACHE, server.startswith("apache")),
        (_NGINX, "nginx" in server or "<center>nginx" in body),
        (_ENVOY, not server or server == "envoy"),
        (_GO, True),
    )
    for table, applies in tables:
        if not applies:
            continue
        for status, text, page in table:
            if resp.status == status and text in body:
                return page
    return None
