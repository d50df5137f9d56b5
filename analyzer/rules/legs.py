"""WS6xx: the two legs of one attempt through a proxy, compared.

A capture taken on the proxy host (or on `any`) holds the client's request to the proxy and the
proxy's copy of it to the backend. A proxy forwards `Sec-WebSocket-Key` unchanged, and sends its
copy after the client's request arrived and before it answers: that pairs the legs. What the
proxy dropped or rewrote on the way (a header with `_`, `Upgrade`, `Connection`, the HTTP
version) is then not a guess from one side but a difference on the wire.
"""

from __future__ import annotations

from collections.abc import Iterator

from analyzer.model import Handshake, HttpRequest, Severity
from analyzer.rules._facts import describe_answer, hs_time
from analyzer.rules._rule import Context, Hit, rule

LEG_WINDOW_NS = 30_000_000_000  # the proxy's copy follows the client's request within this
# Headers a WebSocket server (or xiaozhi) reads: losing or changing one on the way matters.
NEEDED = frozenset(
    {
        "upgrade",
        "connection",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-protocol",
        "sec-websocket-extensions",
        "origin",
        "device-id",
        "client-id",
        "authorization",
        "protocol-version",
    }
)
TOKEN_HEADERS = frozenset({"connection", "upgrade"})  # compared as token sets, any case
SHOWN = 6  # names listed per kind of change


def legs_of(hs: Handshake, ctx: Context) -> tuple[Handshake, Handshake] | None:
    """(client→proxy, proxy→backend) legs of the attempt `hs` belongs to, if both are here."""
    key = hs.request.header("sec-websocket-key") if hs.request is not None else None
    if not key or not key.strip():
        return None
    best: tuple[int, Handshake, Handshake] | None = None
    for other in ctx.lookup.by_key.get(key.strip(), ()):
        if other is hs or other.tcp_stream == hs.tcp_stream or other.server == hs.server:
            continue
        down, up = (
            (hs, other) if (hs_time(hs), hs.tcp_stream) <= (hs_time(other), other.tcp_stream) else (other, hs)
        )
        start, forwarded = hs_time(down), hs_time(up)
        answered = down.response.ts_ns if down.response is not None and down.response.ts_ns else 0
        if not (start <= forwarded <= start + LEG_WINDOW_NS and (not answered or forwarded <= answered)):
            continue  # a proxy forwards after the request came and before it answers
        gap = forwarded - start
        if best is None or gap < best[0]:
            best = (gap, down, up)
    return (best[1], best[2]) if best is not None else None


def _values(req: HttpRequest) -> dict[str, tuple[str, list[str]]]:
    out: dict[str, tuple[str, list[str]]] = {}
    for name, _value in req.headers:
        lname = name.lower()
        if lname not in out:
            out[lname] = (name, [v.strip() for v in req.headers_named(lname)])
    return out


def _token_set(values: list[str]) -> set[str]:
    return {t.strip().lower() for v in values for t in v.split(",") if t.strip()}


def _same(lname: str, a: list[str], b: list[str]) -> bool:
    if lname in TOKEN_HEADERS:
        return _token_set(a) == _token_set(b)
    return a == b


def _needed(lname: str) -> bool:
    return lname.replace("_", "-") in NEEDED


def _changes(down: HttpRequest, up: HttpRequest) -> tuple[list[str], bool]:
    """What the proxy did to the request, in words, and whether any of it matters to a
    WebSocket server."""
    d, u = _values(down), _values(up)
    dropped = [d[n][0] for n in d if n not in u]
    added = [u[n][0] for n in u if n not in d]
    changed = [n for n in d if n in u and _needed(n) and not _same(n, d[n][1], u[n][1])]
    parts: list[str] = []
    if dropped:
        parts.append(
            "dropped " + ", ".join(f"`{n}`" for n in dropped[:SHOWN]) + ("…" if len(dropped) > SHOWN else "")
        )
    for n in changed[:SHOWN]:
        parts.append(f"`{d[n][0]}` {', '.join(d[n][1])!r} → {', '.join(u[n][1])!r}")
    if down.version != up.version:
        parts.append(f"{down.version} → {up.version}")
    if added:
        parts.append(
            "added " + ", ".join(f"`{n}`" for n in added[:SHOWN]) + ("…" if len(added) > SHOWN else "")
        )
    matters = bool(changed) or down.version != up.version or any(_needed(n.lower()) for n in dropped)
    return parts, matters


@rule(
    "WS601",
    "proxy-changed-request",
    Severity.WARNING,
    rank=60,
    title="The proxy forwarded the request without (or with other) upgrade or identity headers",
    fix="Make the proxy pass them: nginx needs `proxy_http_version 1.1;`, `proxy_set_header Upgrade "
    '$http_upgrade;`, `proxy_set_header Connection "upgrade";` and `underscores_in_headers on;` for '
    "header names with `_`; other proxies have the same switches.",
)
def proxy_changed_request(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A capture with both legs of one attempt through a proxy (client → proxy and proxy →
    backend, paired by their identical `Sec-WebSocket-Key` and by the proxy's copy following the
    client's request before the proxy answered): which headers the proxy dropped, which
    upgrade or identity headers it changed, and whether it changed the HTTP version. On each
    leg the finding names the other one.

    Why it is refused:
    The backend only sees the proxy's copy. nginx drops header names with `_` unless
    `underscores_in_headers on;`, does not forward `Upgrade`/`Connection` (hop-by-hop) unless
    told to, and speaks HTTP/1.0 upstream unless `proxy_http_version 1.1;` is set; xiaozhi then
    misses `Device_Id` or answers "Server is running" to what is no longer an upgrade.

    Example:
    Client → nginx: `Device_Id: a0:b7:65:12:34:56`; nginx → xiaozhi: no such header, and the
    server answers `端口正常…`.

    Fix:
    Configure the proxy to pass the upgrade and identity headers unchanged, over HTTP/1.1.

    References:
    field-failures D1, D2, D3 and §6 item 5 (multi-leg diff); xiaozhi-protocol.md §6 row 23.
    """
    legs = legs_of(hs, ctx)
    if legs is None:
        return
    down, up = legs
    assert down.request is not None and up.request is not None  # paired by their requests' key
    parts, matters = _changes(down.request, up.request)
    what = "; ".join(parts) if parts else "unchanged"
    severity = Severity.WARNING if matters else Severity.INFO
    fix = (
        None
        if matters
        else "Nothing to change on this hop: the upgrade and identity headers passed unchanged."
    )
    if hs is down:
        answer = f"; the backend answered {describe_answer(up.response)}" if up.response is not None else ""
        yield Hit(
            f"{hs.server} forwarded this request to {up.server} (tcp.stream {up.tcp_stream}): {what}{answer}",
            evidence=f"same Sec-WebSocket-Key on tcp.stream {down.tcp_stream} and {up.tcp_stream}",
            severity=severity,
            fix=fix,
        )
    else:
        yield Hit(
            f"this is the proxy's copy of the request {down.client} sent to {down.server} "
            f"(tcp.stream {down.tcp_stream}): {what}",
            evidence=f"same Sec-WebSocket-Key on tcp.stream {down.tcp_stream} and {up.tcp_stream}",
            severity=severity,
            fix=fix,
        )


RULES = (proxy_changed_request,)
