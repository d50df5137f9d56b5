"""WS1xx: the upgrade request itself, against RFC 6455 / RFC 9112 and what real servers parse."""

from __future__ import annotations

from collections.abc import Iterator

from analyzer.model import Handshake, HttpRequest, HttpResponse, Outcome, Severity
from analyzer.rules._facts import (
    IDENTITY_HEADERS,
    Rejection,
    after_upgrade,
    asgi_server,
    describe_answer,
    has_websocket_markers,
    header_line,
    is_bare_403,
    is_server_running_page,
    is_websockets_server,
    node_ws_abort,
    path_of,
    proxy_name,
    query_of,
    request_line,
    tokens,
    tomcat_page,
    valid_key,
    ws_complaint,
)
from analyzer.rules._pages import proxy_page
from analyzer.rules._rule import Context, Hit, rule

SINGLE_HEADERS = (
    "host",
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "origin",
    "device-id",
    "client-id",
    "authorization",
    "protocol-version",
    "content-length",
)
BAD_FRAMING = {
    "bare-lf": "a line ends in a bare LF instead of CRLF",
    "obs-fold": "a header is folded over two lines (obs-fold)",
    "space-before-colon": "a header name is followed by a space before the colon",
    "invalid-header-name": "a header name is not an HTTP token",
    "control-char": "a header value holds a control character",
    "line-too-long": "a line is longer than 8192 bytes",
}
MAX_HEADERS = 128  # websockets.http11: more → "too many HTTP headers", no answer
MAX_LINE = 8192


def _failed(hs: Handshake) -> bool:
    return hs.outcome != Outcome.UPGRADED


def _silent(hs: Handshake) -> bool:
    return hs.outcome in (Outcome.NO_RESPONSE, Outcome.RESET)


def _defect(hs: Handshake, evidence_rank: int | None, failed_rank: int) -> tuple[Severity, int]:
    """Severity/rank of a request defect: ERROR with the answer's evidence, else by outcome."""
    if evidence_rank is not None:
        return Severity.ERROR, evidence_rank
    return (Severity.ERROR, failed_rank) if _failed(hs) else (Severity.WARNING, 80)


def _complains(hs: Handshake, *words: str) -> bool:
    if hs.response is None:
        return False
    said = ws_complaint(hs.response) or ""
    return any(w.lower() in said.lower() for w in words)


@rule(
    "WS101",
    "http10-request",
    Severity.ERROR,
    rank=20,
    title="The upgrade request is not HTTP/1.1",
    fix="Send `GET <path> HTTP/1.1`; behind nginx set `proxy_http_version 1.1;` together with "
    '`proxy_set_header Upgrade $http_upgrade;` and `proxy_set_header Connection "upgrade";`.',
)
def http10_request(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The request line's version is not `HTTP/1.1` (usually `HTTP/1.0`).

    Why it is refused:
    RFC 6455 requires HTTP/1.1 or later. `websockets` 14.2 (xiaozhi-server) cannot parse it and
    closes without any answer; `websockets` ≥ 17 answers 505. nginx talks HTTP/1.0 to its
    upstream unless `proxy_http_version 1.1` is set, so on the proxy→server leg this is the
    classic cause of a 502 seen by the device.

    Example:
    `GET /xiaozhi/v1/ HTTP/1.0`

    Fix:
    Send HTTP/1.1; in nginx add `proxy_http_version 1.1;` to the WebSocket location.

    References:
    RFC 6455 §4.1; xiaozhi-protocol.md §2; nginx websocket proxying docs.
    """
    req = hs.request
    if req is None or req.version.upper() == "HTTP/1.1" or req.version.upper().startswith("HTTP/2"):
        return
    status = hs.response.status if hs.response else None
    evidence_rank = 10 if _silent(hs) or status in (400, 426, 505) else None
    sev, rank = _defect(hs, evidence_rank, 30)
    how = "the server closed without answering" if _silent(hs) else "the WebSocket upgrade needs HTTP/1.1"
    yield Hit(f"the request is {req.version}: {how}", evidence=request_line(req), severity=sev, rank=rank)


def _framing_problems(req: HttpRequest, zero_length_ok: bool = False) -> list[str]:
    """What a strict parser refuses. `zero_length_ok`: `Content-Length: 0` (the JDK's client
    always sends it) passes everywhere but websockets ≤ 14, xiaozhi's parser."""
    problems: list[str] = []
    if req.method != "GET":
        problems.append(f"the method is {req.method}, not GET")
    for name in ("content-length", "transfer-encoding"):
        values = req.headers_named(name)
        if values and not (zero_length_ok and name == "content-length" and values == ["0"]):
            problems.append(f"it carries a body header ({header_line(req, name)})")
    if len(req.headers) > MAX_HEADERS:
        problems.append(f"it has {len(req.headers)} headers (websockets accepts at most {MAX_HEADERS})")
    longest = longest_line(req)
    if longest is not None:
        problems.append(f"{longest} is longer than the {MAX_LINE} bytes websockets reads")
    problems.extend(
        text
        for name, text in BAD_FRAMING.items()
        if name in req.anomalies and not (name == "line-too-long" and longest is not None)
    )
    return problems


def longest_line(req: HttpRequest, limit: int = MAX_LINE) -> str | None:
    """The request's longest line, in words, when it is longer than `limit` bytes with its CRLF
    (websockets reads lines with 8192 bytes at most, CRLF included: a 8191-byte line is dropped)."""
    name, size = "the request line", len(req.method) + len(req.target) + len(req.version) + 4
    for n, v in req.headers:
        if len(n) + len(v) + 4 > size:  # "Name: value\r\n"
            name, size = f"the `{n}` header", len(n) + len(v) + 4
    return f"{name} ({size:,} bytes with its CRLF)" if size > limit else None


@rule(
    "WS102",
    "malformed-request",
    Severity.ERROR,
    rank=20,
    title="The request is not a plain GET that a strict WebSocket server can parse",
    fix="Send exactly `GET <path> HTTP/1.1` with CRLF line ends, no body headers, at most 128 headers "
    "and lines under 8 KiB.",
)
def malformed_request(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    Non-GET method, `Content-Length`/`Transfer-Encoding` (even `Content-Length: 0`), bare-LF line
    ends or other framing anomalies the parser recorded, more than 128 headers, lines over 8 KiB.

    Why it is refused:
    `websockets` 14.2 (xiaozhi-server) treats each of these as "did not receive a valid HTTP
    request" and drops the connection without a response; `websockets` ≥ 17 answers 405/414/431.
    Hand-built requests (typed in a terminal, built with `\\n` in firmware) hit this.

    Example:
    `POST /xiaozhi/v1/ HTTP/1.1`, or `Content-Length: 0`, or lines ending in `\\n`.

    Fix:
    Build the request with CRLF line ends, method GET and no body headers.

    References:
    RFC 6455 §4.1; websockets `http11.py` (`Request.parse`); xiaozhi-protocol.md §2, §6 row 15;
    field-failures B9.
    """
    req = hs.request
    if req is None:
        return
    problems = _framing_problems(req, zero_length_ok=not ctx.xiaozhi)
    if not problems:
        return
    status = hs.response.status if hs.response else None
    invalid = _complains(hs, "did not receive a valid HTTP request")
    evidence_rank = 10 if _silent(hs) or invalid or status in (405, 414, 431) else None
    sev, rank = _defect(hs, evidence_rank, 35)
    tail = "; the server closed without answering" if _silent(hs) else ""
    yield Hit("; ".join(problems) + tail, evidence=_offending_line(req), severity=sev, rank=rank)


def _offending_line(req: HttpRequest) -> str:
    """The line a strict parser stops at: a body header if there is one, else the request line."""
    for name in ("content-length", "transfer-encoding"):
        if req.headers_named(name):
            return header_line(req, name)
    return request_line(req)


@rule(
    "WS103",
    "missing-host",
    Severity.ERROR,
    rank=30,
    title="The request has no Host header",
    fix="Send `Host: <host>[:port]` (every HTTP/1.1 client library does).",
)
def missing_host(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    No `Host` header in the request.

    Why it is refused:
    RFC 9112 requires servers to answer 400 to an HTTP/1.1 request without `Host`; nginx,
    Cloudflare and most frameworks do, and virtual hosting cannot route it. `websockets` itself
    does not check `Host`, so a direct xiaozhi-server accepts it.

    Example:
    `GET /xiaozhi/v1/ HTTP/1.1` followed by `Upgrade: websocket` and no `Host:` line.

    Fix:
    Add `Host:` with the name the URL uses.

    References:
    RFC 9112 §3.2; RFC 6455 §4.1 (item 4).
    """
    req = hs.request
    if req is None or req.headers_named("host"):
        return
    resp = hs.response
    if resp is not None and resp.status == 400 and not is_websockets_server(resp):
        yield Hit(
            "the request has no Host header and the server answered 400",
            evidence=describe_answer(resp),
            rank=10,
        )
    else:
        yield Hit(
            "the request has no Host header (proxies and most servers answer 400)",
            evidence="(no Host header)",
            severity=Severity.WARNING,
            rank=60,
        )


@rule(
    "WS104",
    "missing-upgrade-headers",
    Severity.ERROR,
    rank=25,
    title="`Upgrade: websocket` or the `upgrade` token of `Connection` is missing",
    fix="Send `Upgrade: websocket` and `Connection: Upgrade`; behind nginx add "
    '`proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection "upgrade";`.',
)
def missing_upgrade_headers(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The request lacks `Upgrade: websocket`, or its `Connection` header has no `upgrade` token.

    Why it is refused:
    RFC 6455 requires both. `websockets` answers 426 `…missing Upgrade header` (or 400 for
    `Connection`); xiaozhi-server answers `200 Server is running` as soon as `Connection` is not
    exactly `upgrade`. Proxies drop both hop-by-hop headers unless told to forward them, so on a
    proxy→server leg the request arrives with `Connection: close` and no `Upgrade`. This rule is
    the verdict for such a WebSocket attempt (it carries Sec-WebSocket-* headers) answered by the
    `Server is running` page, on both legs: on the client→proxy leg the request is fine and the
    relayed page shows the proxy lost the headers. For a plain GET without any WebSocket header
    (a browser or curl opening the URL) the page itself is the verdict.

    Example:
    `Connection: close` and no `Upgrade:` line.

    Fix:
    Send both headers; configure the proxy to forward them.

    References:
    RFC 6455 §4.1 (items 5-6); RFC 9110 §7.6.1 (hop-by-hop); xiaozhi-protocol.md §1.2, §6 row 13;
    field-failures D1.
    """
    req = hs.request
    if req is None:
        return
    missing = []
    if "websocket" not in tokens(req, "upgrade"):
        missing.append(header_line(req, "Upgrade"))
    if "upgrade" not in tokens(req, "connection"):
        missing.append(header_line(req, "Connection"))
    resp = hs.response
    page = is_server_running_page(resp)
    if not missing:
        if page and len(req.headers_named("connection")) == 1 and tokens(req, "connection") == ["upgrade"]:
            assert resp is not None
            who = proxy_name(resp) or "a proxy in between"
            msg = "the request has both upgrade headers, but xiaozhi-server answered as if it got none: "
            yield Hit(
                msg + f"{who} did not forward Upgrade/Connection", evidence=describe_answer(resp), rank=15
            )
        elif resp is not None and _server_saw_no_upgrade(resp):
            yield Hit(
                f"the request has both upgrade headers, but the server answered {resp.status} as if it "
                "got none: a proxy in between did not forward Upgrade/Connection (hop-by-hop headers)",
                evidence=describe_answer(resp),
                rank=15,
            )
        elif resp is not None and resp.status == 101:
            yield from _incomplete_101(hs, resp)
        return
    evidence_rank = None
    if resp is not None and (resp.status == 426 or _complains(hs, "Upgrade header", "Connection header")):
        evidence_rank = 5
    elif page:  # the page is the symptom; for a plain GET (no WebSocket markers) it is the verdict
        evidence_rank = 15 if has_websocket_markers(req) else 30
    sev, rank = _defect(hs, evidence_rank, 25)
    forwarded = req.headers_named("x-forwarded-for") or req.headers_named("x-real-ip")
    via = " (X-Forwarded-For/X-Real-IP: a proxy that did not forward them sent it)" if forwarded else ""
    yield Hit(
        "the upgrade headers are missing or wrong: " + "; ".join(missing) + via,
        evidence=" / ".join(missing),
        severity=sev,
        rank=rank,
    )


def _server_saw_no_upgrade(resp: HttpResponse) -> bool:
    """426 without a version list (RFC 6455 §4.4 puts one there for a version problem), or
    Spring's 400 `Can "Upgrade" only to "WebSocket"`: the server did not see the upgrade."""
    if resp.status == 426 and not resp.headers_named("sec-websocket-version"):
        return True
    return resp.status == 400 and b'only to "WebSocket"' in resp.body


def _incomplete_101(hs: Handshake, resp: HttpResponse) -> Iterator[Hit]:
    """A 101 must carry `Upgrade: websocket` and `Connection: Upgrade` (RFC 6455 §4.2.2)."""
    lacking = [
        line
        for line, ok in (
            ("Upgrade: websocket", (resp.header("upgrade") or "").strip().lower() == "websocket"),
            ("Connection: Upgrade", any("upgrade" in v.lower() for v in resp.headers_named("connection"))),
        )
        if not ok
    ]
    if not lacking:
        return
    used = any(f.direction == "client" for f in hs.frames)  # the client went on: it did not check
    yield Hit(
        "the 101 lacks " + " and ".join(lacking) + ": browsers and most client libraries fail the "
        "handshake (the ESP32 firmware only looks for `HTTP/1.1 101`)"
        + ("; this client went on anyway" if used else ""),
        evidence="101 without " + ", ".join(lacking),
        severity=Severity.WARNING if used else Severity.ERROR,
        rank=12,
        fix="Fix the server or proxy that writes the 101: it must send `Upgrade: websocket` and "
        "`Connection: Upgrade`.",
    )


@rule(
    "WS105",
    "connection-token-list",
    Severity.ERROR,
    rank=10,
    title="`Connection` is a token list (`keep-alive, Upgrade`), not exactly `Upgrade`",
    fix="Send `Connection: Upgrade` alone (xiaozhi-server compares the whole value); from Firefox use the "
    'device or a client library, or put nginx in front with `proxy_set_header Connection "upgrade"`.',
)
def connection_token_list(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    `Connection` contains the `upgrade` token but is not exactly `upgrade`
    (`Connection: keep-alive, Upgrade`, Firefox's form).

    Why it is refused:
    RFC 6455 allows a list, but some servers compare the whole value. xiaozhi-server's
    `process_request` hook answers `200 Server is running` unless the value, lower-cased, is
    exactly `upgrade`; sockjs, websocket-php and others answer 400/426. This rule is the verdict
    when the `Server is running` page is the answer (the request is what to change); the page
    rule then only supports it. With servers that upgrade anyway it is informational.

    Example:
    `Connection: keep-alive, Upgrade` → `HTTP/1.1 200 OK … Server is running`.

    Fix:
    Send `Connection: Upgrade`; test xiaozhi with the device, py-xiaozhi or a Chromium browser.

    References:
    RFC 6455 §4.1 (item 6); xiaozhi-server `core/websocket_server.py` `_http_response`;
    xiaozhi-protocol.md §1.2, §6 row 12; field-failures B3.
    """
    req = hs.request
    if req is None or len(req.headers_named("connection")) != 1:
        return
    value = req.headers_named("connection")[0].strip()
    if "upgrade" not in tokens(req, "connection") or value.lower() == "upgrade":
        return
    resp = hs.response
    ev = header_line(req, "Connection")
    if resp is not None and resp.status == 200 and resp.body.startswith(b"Server is running"):
        yield Hit(
            f"`Connection: {value}` is not exactly `upgrade`, so xiaozhi-server answered "
            "200 Server is running instead of 101",
            evidence=ev,
        )
    elif resp is not None and resp.status in (400, 426) and not is_websockets_server(resp):
        yield Hit(
            f"`Connection: {value}` is a list; this server seems to compare the value exactly",
            evidence=ev,
            rank=30,
        )
    elif hs.outcome == Outcome.UPGRADED:
        yield Hit(
            f"`Connection: {value}` is a list; this server accepted it, xiaozhi-server would not",
            evidence=ev,
            severity=Severity.INFO,
            rank=90,
        )
    else:
        yield Hit(
            f"`Connection: {value}` is a list; servers that compare exactly (xiaozhi-server) refuse it",
            evidence=ev,
            severity=Severity.WARNING,
            rank=40,
        )


@rule(
    "WS106",
    "bad-websocket-key",
    Severity.ERROR,
    rank=25,
    title="`Sec-WebSocket-Key` is missing or not base64 of 16 bytes",
    fix="Send `Sec-WebSocket-Key: <base64 of 16 random bytes>` (24 characters ending in `==`).",
)
def bad_websocket_key(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    `Sec-WebSocket-Key` is absent, repeated, or does not decode to exactly 16 bytes.

    Why it is refused:
    RFC 6455 requires a nonce of 16 bytes, base64-encoded. `websockets` answers
    `400 … invalid Sec-WebSocket-Key header` (or `missing …`); ws, gorilla, ASP.NET answer 400.

    Example:
    `Sec-WebSocket-Key: 3f2b8c1e-9a7d-4e21-b0c4-5d6e7f809a1b` (a UUID), or a 32-byte key.

    Fix:
    Generate 16 random bytes and base64-encode them.

    References:
    RFC 6455 §4.1 (item 7), §4.2.1; websockets `server.py` `process_key`; field-failures B5.
    """
    req = hs.request
    if req is None:
        return
    keys = req.headers_named("sec-websocket-key")
    if len(keys) == 1 and valid_key(keys[0]):
        return
    what = "missing" if not keys else "repeated" if len(keys) > 1 else "not base64 of 16 bytes"
    evidence_rank = 5 if _complains(hs, "Sec-WebSocket-Key") else None
    sev, rank = _defect(hs, evidence_rank, 25)
    yield Hit(
        f"Sec-WebSocket-Key is {what}",
        evidence=header_line(req, "Sec-WebSocket-Key"),
        severity=sev,
        rank=rank,
    )


@rule(
    "WS107",
    "bad-websocket-version",
    Severity.ERROR,
    rank=25,
    title="`Sec-WebSocket-Version` is missing or not 13",
    fix="Send `Sec-WebSocket-Version: 13`.",
)
def bad_websocket_version(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    `Sec-WebSocket-Version` is absent, repeated or different from `13`.

    Why it is refused:
    13 is the only version of RFC 6455. `websockets` answers 400 `invalid Sec-WebSocket-Version
    header: 8`; other servers answer 426 with `Sec-WebSocket-Version: 13`.

    Example:
    `Sec-WebSocket-Version: 8`

    Fix:
    Use a client that speaks RFC 6455 and sends version 13.

    References:
    RFC 6455 §4.1 (item 9), §4.4; field-failures B5.
    """
    req = hs.request
    if req is None:
        return
    versions = req.headers_named("sec-websocket-version")
    if len(versions) == 1 and versions[0].strip() == "13":
        return
    resp = hs.response
    told = resp is not None and (resp.status == 426 and resp.header("sec-websocket-version") is not None)
    evidence_rank = 5 if told or _complains(hs, "Sec-WebSocket-Version") else None
    sev, rank = _defect(hs, evidence_rank, 25)
    what = (
        "missing" if not versions else "repeated" if len(versions) > 1 else f"{versions[0].strip()}, not 13"
    )
    yield Hit(
        f"Sec-WebSocket-Version is {what}",
        evidence=header_line(req, "Sec-WebSocket-Version"),
        severity=sev,
        rank=rank,
    )


def _query_duplicates(req: HttpRequest) -> list[str]:
    """xiaozhi copies query identity into the headers (appending) only when Device-Id is absent."""
    if req.headers_named("device-id"):
        return []
    query = query_of(req)
    if "device-id" not in query:
        return []
    return [n for n in ("client-id", "authorization") if n in query and req.headers_named(n)]


@rule(
    "WS108",
    "duplicate-header",
    Severity.ERROR,
    rank=30,
    title="A header that must appear once is repeated",
    fix="Send each of Host, Connection, Upgrade, Sec-WebSocket-*, Device-Id, Client-Id, Authorization once; "
    "with xiaozhi, put identity either in headers or in the query, not both.",
)
def duplicate_header(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    Repeated single-valued headers (Host, Connection, Upgrade, Sec-WebSocket-Key/Version,
    Origin, Device-Id, Client-Id, Authorization, Protocol-Version, Content-Length); with xiaozhi
    also a `Client-Id`/`Authorization` header plus the same key in the query when `device-id`
    comes from the query (the server then appends a second value).

    Why it is refused:
    xiaozhi-server: a repeated `Connection` makes its `process_request` hook raise → HTTP 500
    `Failed to open a WebSocket connection.\\nSee server log…`; a repeated identity header makes
    `dict(headers)` raise `MultipleValuesError` after the 101 → Close 1011, no text.
    `websockets` answers 400 `…: multiple values` for a repeated key/version/Origin; RFC 9112
    requires 400 for a repeated Host.

    Example:
    `Device-Id: a0:b7:65:12:34:56` twice → `101`, then Close 1011.

    Fix:
    Remove the duplicate (often a library adds a header the application also sets).

    References:
    RFC 9110 §5.3; xiaozhi-protocol.md §1.2, §1.3 (items 2-3), §6 rows 11 and 12b.
    """
    req = hs.request
    if req is None:
        return
    repeated = [n for n in SINGLE_HEADERS if len(req.headers_named(n)) > 1]
    from_query = _query_duplicates(req) if ctx.xiaozhi else []
    if not repeated and not from_query:
        return
    resp = hs.response
    crash = after_upgrade(hs, ctx.xiaozhi).rejection == Rejection.CRASH
    server_log = resp is not None and resp.status == 500 and _complains(hs, "See server log")
    identity_dup = any(n in IDENTITY_HEADERS for n in repeated) or bool(from_query)
    strong = (
        (crash and identity_dup)
        or (server_log and "connection" in repeated)
        or _complains(hs, "multiple values")
    )
    for name in repeated:
        sev, rank = _defect(hs, 5 if strong else None, 30)
        if crash and name in IDENTITY_HEADERS:
            sev, rank = Severity.ERROR, 5
        yield Hit(
            f"{name} is sent {len(req.headers_named(name))} times",
            evidence=header_line(req, name),
            severity=sev,
            rank=rank,
        )
    for name in from_query:
        sev = Severity.ERROR if crash or _failed(hs) else Severity.WARNING
        yield Hit(
            f"{name} is both a header and a query parameter while device-id is only in the query: "
            "xiaozhi-server appends the query value, so the header exists twice (Close 1011 with auth on)",
            evidence=f"{header_line(req, name)}; query {name}=…",
            severity=sev,
            rank=5 if crash else 30,
        )


@rule(
    "WS109",
    "underscore-header",
    Severity.WARNING,
    rank=70,
    title="A header name contains `_`; nginx drops such headers by default",
    fix="Use `-` in header names (`Device-Id`, not `Device_Id`), or set `underscores_in_headers on;` "
    "in nginx.",
)
def underscore_header(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    Header names containing an underscore (`Device_Id`, `access_token`).

    Why it is refused:
    nginx's default `underscores_in_headers off` silently drops them, so the server behind it
    never sees the header. xiaozhi-server itself treats `Device_Id` as a different header from
    `Device-Id` and ignores it (→ `端口正常…`), so for identity headers this is the cause even
    without a proxy.

    Example:
    `Device_Id: a0:b7:65:12:34:56`

    Fix:
    Rename the header with `-`; or enable `underscores_in_headers on;` in the nginx server block.

    References:
    nginx `underscores_in_headers`; xiaozhi-protocol.md §1.3 (item 1); field-failures D2.
    """
    req = hs.request
    if req is None:
        return
    rejection = after_upgrade(hs, ctx.xiaozhi).rejection
    for name, value in req.headers:
        if "_" not in name:
            continue
        meant = name.lower().replace("_", "-")
        if (
            ctx.xiaozhi
            and meant in IDENTITY_HEADERS
            and (
                (meant == "device-id" and rejection == Rejection.NO_IDENTITY)
                or (meant != "device-id" and rejection == Rejection.AUTH_FAILED)
            )
        ):
            yield Hit(
                f"`{name}` is not `{meant.title()}`: the server (or nginx before it) ignores it",
                evidence=f"{name}: {value}",
                severity=Severity.ERROR,
                rank=15,
            )
        else:
            yield Hit(
                f"`{name}` contains an underscore; nginx drops it unless underscores_in_headers is on",
                evidence=f"{name}: {value}",
            )


def _expected_path(ctx: Context) -> str | None:
    return ctx.config.expect_path


@rule(
    "WS110",
    "wrong-path",
    Severity.ERROR,
    rank=20,
    title="The request path is not the one the server (or its proxy) routes to the WebSocket",
    fix="Use the exact path (xiaozhi: `/xiaozhi/v1/`, with the trailing slash); behind a proxy, match its "
    "`location` and `proxy_pass` prefix.",
)
def wrong_path(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A 404 (or a proxy's no-route answer: Caddy's empty 200); a bare 403 from an ASGI server
    (uvicorn, hypercorn, daphne: Starlette answers it when no WebSocket route matches) to the
    xiaozhi path or a path other than `--expect-path`; the OTA endpoint's 404 (`/xiaozhi/ota`
    without the slash); or a path that differs from `--expect-path`. With xiaozhi (which accepts
    any path) a path other than `/xiaozhi/v1/` is only flagged when a proxy is seen in front.

    Why it is refused:
    Routers answer 404 for an unknown path; Starlette/FastAPI answer **403** for a WebSocket to
    an unrouted path (uvicorn logs `connection rejected (403 Forbidden)`). xiaozhi-server does
    not check the path at all, so a wrong path only bites through a proxy that routes by path.

    Example:
    `GET /ws HTTP/1.1` → `HTTP/1.1 403 Forbidden`, `Server: uvicorn`.

    Fix:
    Use the server's route exactly (trailing slash included); align the proxy's `location`.

    References:
    RFC 6455 §4.1 (resource name); xiaozhi-protocol.md §1.1; field-failures B1.
    """
    req, resp = hs.request, hs.response
    if req is None:
        return
    path, expected = path_of(req), _expected_path(ctx)
    mismatch = expected is not None and path != expected
    hint = f" (expected {expected})" if mismatch else ""
    if expected is not None and path.rstrip("/") == expected.rstrip("/") and path != expected:
        hint = f" (expected {expected}: the trailing slash differs)"
    page = proxy_page(resp) if resp is not None else None
    if resp is not None and page is not None and page.kind == "no-route":
        yield Hit(
            f"{path} is not routed here{hint}: {page.proxy} answered {resp.status} {resp.reason}: "
            f"{page.meaning}",
            evidence=describe_answer(resp),
            fix=page.fix,
        )
    elif resp is not None and resp.status == 404 and tomcat_page(resp):
        yield Hit(
            f"Tomcat has no web application or WebSocket endpoint at {path}{hint}: the context path and "
            "the `@ServerEndpoint` value together make the URL",
            evidence=describe_answer(resp),
            fix="Use the context path of the deployed application plus the endpoint's "
            "`@ServerEndpoint(\"/…\")` value (ROOT.war has none).",
        )
    elif resp is not None and resp.status == 404:
        yield Hit(f"{path} is not routed here: 404{hint}", evidence=describe_answer(resp))
    elif resp is not None and (resp.status, resp.reason, resp.headers) == (500, "Internal server error", ()):
        yield Hit(
            f"daphne answered its bare 500: the Channels app raised before accept(), most often "
            f"`URLRouter` finding no route for {path} (ValueError: No route found for path){hint}",
            evidence=describe_answer(resp),
            rank=30,
            fix="Use a path the Channels `URLRouter` routes (`path(\"ws/...\", Consumer.as_asgi())`); "
            "daphne's log shows the exception.",
        )
    elif resp is not None and resp.status == 400 and node_ws_abort(resp) and resp.body == b"Bad Request":
        yield Hit(
            f"the Node `ws` server refused {path} with its bare 400: its `path` option (or `shouldHandle`) "
            f"does not match{hint}",
            evidence=describe_answer(resp),
            fix="Use the path the `ws` server is created with (`new WebSocketServer({ path })`), or fix "
            "its `path`/`shouldHandle`.",
        )
    elif (
        resp is not None
        and resp.status == 403
        and (asgi_server(resp) is not None or is_bare_403(resp))
    ):
        xiaozhi_path = ctx.xiaozhi and path.startswith("/xiaozhi/")
        starlette = asgi_server(resp) in ("uvicorn", "hypercorn")  # daphne's 403 is Channels' own
        if mismatch or (expected is None and (xiaozhi_path or starlette)):
            why = " (xiaozhi-server never answers 403: another app answered)" if xiaozhi_path else ""
            yield Hit(
                f"a bare 403 for {path}, Starlette/FastAPI's answer when no WebSocket route matches"
                f"{hint}{why}; if the route exists, the app closed before accept() (`--expect-path` "
                "tells them apart)",
                evidence=describe_answer(resp),
                rank=20 if mismatch else 30,
            )
    elif mismatch:
        if _failed(hs):
            yield Hit(
                f"the request path {path} differs from the expected one{hint}",
                evidence=request_line(req),
                rank=35,
            )
        else:
            sev = Severity.INFO if ctx.xiaozhi else Severity.WARNING
            yield Hit(
                f"the request path {path} differs from the expected one{hint}; this server accepted it",
                evidence=request_line(req),
                severity=sev,
                rank=90,
            )
    elif ctx.xiaozhi and expected is None and not path.startswith("/xiaozhi/v1"):
        proxy = proxy_name(resp) if resp is not None else None
        if proxy is not None:
            yield Hit(
                f"{path} is not /xiaozhi/v1/ and {proxy} is in front: it may route only that path",
                evidence=request_line(req),
                severity=Severity.WARNING,
                rank=45,
            )


RULES = (
    http10_request,
    malformed_request,
    missing_host,
    missing_upgrade_headers,
    connection_token_list,
    bad_websocket_key,
    bad_websocket_version,
    duplicate_header,
    underscore_header,
    wrong_path,
)
