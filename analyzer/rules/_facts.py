"""Facts the rules share: header tokens, the server's view of identity, who answered, what the
frames after a 101 say, token shape and signature. Pure functions over model types.
"""

from __future__ import annotations

import base64
import binascii
import enum
import functools
import hashlib
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from analyzer.model import Handshake, HttpRequest, HttpResponse, Opcode, OtaExchange, WsFrame

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}\.[0-9]{9,11}$")
MAC_ESP32_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")  # firmware: %02x:… lower-case
MAC_MANAGER_RE = re.compile(r"^([0-9A-Za-z]{2}[:-]){5}([0-9A-Za-z]{2})$")  # manager-api OTAController
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
WS_FAILURE_PREFIX = "Failed to open a WebSocket connection"
AUTH_FAILED_TEXT = "认证失败"
NO_IDENTITY_TEXT = "端口正常"
IDENTITY_HEADERS = ("device-id", "client-id", "authorization")
PROXY_SERVERS = (
    "nginx",
    "openresty",
    "tengine",
    "cloudflare",
    "caddy",
    "envoy",
    "haproxy",
    "apache",
    "traefik",
    "varnish",
    "squid",
    "litespeed",
    "cloudfront",
    "akamai",
    "microsoft-iis",
    "awselb",
    "kong",
)


# --- request ------------------------------------------------------------------------------------


def tokens(req: HttpRequest, name: str) -> list[str]:
    """The comma-separated tokens of every `name` header, lower-cased (RFC 9110 §5.6.1 lists)."""
    return [t.strip().lower() for v in req.headers_named(name) for t in v.split(",") if t.strip()]


def path_of(req: HttpRequest) -> str:
    target = req.target
    if target.startswith(("http://", "https://", "ws://", "wss://")):
        # absolute form (to a proxy): the path after the authority, which may be malformed
        # (`http://[::1/x` makes urlsplit raise), so cut it by hand
        rest = target.split("://", 1)[1].split("?", 1)[0]
        target = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return target.split("?", 1)[0]


def query_of(req: HttpRequest) -> dict[str, list[str]]:
    """The query as the xiaozhi server parses it (`parse_qs`: `+` is a space, blanks dropped)."""
    if "?" not in req.target:
        return {}
    return parse_qs(req.target.split("?", 1)[1])


def is_websocket_attempt(req: HttpRequest) -> bool:
    """False only for other upgrades (h2c, tcp, TLS/1.0): those get no findings.

    The tracker already keeps only requests that smell of a WebSocket attempt (an upgrade header,
    a Sec-WebSocket-* header, the xiaozhi path or identity headers), so anything else counts.
    """
    upgrade = tokens(req, "upgrade")
    has_sec = any(n.lower().startswith("sec-websocket-") for n, _ in req.headers)
    return not (upgrade and "websocket" not in upgrade and not has_sec)


def has_websocket_markers(req: HttpRequest) -> bool:
    """The request was meant as an upgrade: `Upgrade: websocket` or a Sec-WebSocket-* header.

    A plain GET without them is a browser or curl opening the ws:// URL, not a broken client.
    """
    return "websocket" in tokens(req, "upgrade") or any(
        n.lower().startswith("sec-websocket-") for n, _ in req.headers
    )


def is_server_running_page(resp: HttpResponse | None) -> bool:
    return resp is not None and resp.status == 200 and resp.body.startswith(b"Server is running")


def is_bare_403(resp: HttpResponse) -> bool:
    """A 403 with no page and no proxy fingerprint: an application's refusal (uvicorn sends exactly
    this, without even a Server header)."""
    body = body_text(resp).strip().lower()
    return (
        resp.status == 403
        and proxy_name(resp) is None
        and not is_websockets_server(resp)
        and (body in ("", "forbidden", "403 forbidden"))
    )


CREDENTIAL_PARAMS = frozenset(
    {"token", "access_token", "accesstoken", "auth", "auth_token", "authorization", "jwt", "key", "api_key"}
)
CREDENTIAL_HEADERS = ("cookie", "x-api-key", "x-auth-token")


def is_browser(req: HttpRequest) -> bool:
    """A browser's request: it cannot set `Authorization` (or any header) on a WebSocket."""
    return "mozilla" in (req.header("user-agent") or "").lower() and bool(req.headers_named("origin"))


def credential_elsewhere(req: HttpRequest) -> str | None:
    """Where the request carries a credential other than `Authorization`, in words: a token-like
    query parameter (what browsers must use), a cookie or key header, or a token offered as a
    subprotocol (`new WebSocket(url, ["Bearer", token])`)."""
    query = query_of(req)
    for name in query:
        if name.lower() in CREDENTIAL_PARAMS:
            return f"the `{name}` query parameter"
    for name in CREDENTIAL_HEADERS:
        if req.headers_named(name):
            return f"the `{name.title()}` header"
    offered = tokens(req, "sec-websocket-protocol")
    if any(p in ("bearer", "token", "access_token") or p.startswith("eyj") for p in offered):
        return "Sec-WebSocket-Protocol"
    return None


def gorilla_refusal(resp: HttpResponse) -> bool:
    """Go's gorilla/websocket Upgrader refusing: `Sec-Websocket-Version: 13` on the error and
    `http.Error`'s body, the status text (its reason string is never sent). Its only 403 is
    `CheckOrigin` saying no."""
    return (
        resp.status >= 400
        and bool(resp.headers_named("sec-websocket-version"))
        and resp.status in GORILLA_STATUSES
        and body_text(resp).strip() == HTTPStatus(resp.status).phrase
    )


GORILLA_STATUSES = frozenset({400, 403, 405, 426})  # what its Upgrader answers


def tomcat_page(resp: HttpResponse) -> bool:
    """Apache Tomcat's own HTML error page (no Server header; its version in an `<h3>`)."""
    return "<h3>apache tomcat" in resp.body[:4096].decode("utf-8", "replace").lower()


def node_ws_abort(resp: HttpResponse) -> bool:
    """The Node `ws` library's own refusal (`abortHandshake`): `Connection: close`,
    `Content-Type: text/html` and `Content-Length` first, no Server or Date, the message as body."""
    names = [n.lower() for n, _ in resp.headers[:3]]
    return names == ["connection", "content-type", "content-length"] and not resp.headers_named("server")


def same_origin(req: HttpRequest) -> bool:
    """Does `Origin` name the very host and port the request went to (`Host`)? A same-origin
    page is what every default Origin check lets through, so a refusal is something else."""
    origin, host = (req.header("origin") or "").strip().lower(), (req.header("host") or "").strip().lower()
    if not origin or not host:
        return False
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return False
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme)
    name = parts.hostname or ""
    if ":" in name:
        name = f"[{name}]"
    wanted = {f"{name}:{port or default}"} | ({name} if (port or default) == default else set())
    return host in wanted


def asgi_server(resp: HttpResponse) -> str | None:
    """The Python ASGI server behind a bare 403, whose meaning is always "the app closed the
    WebSocket before accept()": uvicorn (`Server` on its websockets side, lower-case headers and
    an empty reason on its wsproto side), hypercorn, daphne (`403 Access denied`, no headers)."""
    if resp.status != 403 or body_text(resp).strip():
        return None
    server = server_header(resp).lower()
    for name in ("uvicorn", "hypercorn", "daphne"):
        if name in server:
            return name
    if not resp.headers and resp.reason == "Access denied":
        return "daphne"
    names = [n for n, _ in resp.headers]
    if not server and not resp.reason and names and all(n == n.lower() for n in names):
        return "uvicorn"  # h11/wsproto writes lower-case names and no reason phrase
    if not server and {n.lower() for n in names} == {"date", "connection", "content-length", "content-type"}:
        return "uvicorn"  # its websockets implementation's reject response, without Server
    return None


def is_xiaozhi_request(req: HttpRequest) -> bool:
    if path_of(req).startswith("/xiaozhi/"):
        return True
    if any(req.headers_named(h) for h in ("device-id", "client-id", "protocol-version")):
        return True
    query = query_of(req)
    return "device-id" in query or "client-id" in query


@dataclass(frozen=True, slots=True)
class Identity:
    """Device-Id, Client-Id and Authorization as xiaozhi-server sees them (spec §1.3).

    The query fallback runs only when no `Device-Id` header exists; `source` says which one was
    used ("header", "query" or "" when there is no device id at all).
    """

    device_id: str | None
    client_id: str | None
    authorization: str | None
    source: str


def identity(req: HttpRequest) -> Identity:
    def first(name: str) -> str | None:
        values = req.headers_named(name)
        return values[0].strip() if values else None

    device, client, auth = first("device-id"), first("client-id"), first("authorization")
    if device is not None:
        return Identity(device, client, auth, "header")
    query = query_of(req)

    def q(name: str) -> str | None:
        return query[name][0] if name in query else None

    device = q("device-id")
    if device is None:
        return Identity(None, client, auth, "")
    return Identity(
        device,
        client if client is not None else q("client-id"),
        auth if auth is not None else q("authorization"),
        "query",
    )


def bearer_token(authorization: str | None) -> str | None:
    """The token after the exact `Bearer ` prefix (what AuthManager receives), else None."""
    if authorization is None:
        return None
    value = authorization.rstrip()  # websockets strips trailing blanks: `Bearer ` becomes `Bearer`
    return value[7:] if value.startswith("Bearer ") else None


def valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key.strip().encode("latin-1"), validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


def accept_for(key: str) -> str:
    digest = hashlib.sha1((key.strip() + WS_GUID).encode("latin-1")).digest()
    return base64.b64encode(digest).decode("ascii")


def header_line(req: HttpRequest | HttpResponse, name: str) -> str:
    """Evidence text: the header lines named `name`, as on the wire."""
    lname = name.lower()
    lines = [f"{n}: {v}" for n, v in req.headers if n.lower() == lname]
    return " / ".join(lines) if lines else f"(no {name} header)"


def request_line(req: HttpRequest) -> str:
    return f"{req.method} {req.target} {req.version}"


# --- response -----------------------------------------------------------------------------------


def body_text(resp: HttpResponse) -> str:
    return resp.body.decode("utf-8", "replace")


def ws_complaint(resp: HttpResponse) -> str | None:
    """What the `websockets` library said it rejected (`…connection: <this>`), if it wrote the body."""
    text = body_text(resp)
    if not text.startswith(WS_FAILURE_PREFIX):
        return None
    rest = text[len(WS_FAILURE_PREFIX) :]
    return rest[1:].strip().split("\n")[0].strip() if rest.startswith(":") else rest.strip()


def server_header(resp: HttpResponse) -> str:
    return resp.header("server") or ""


def is_websockets_server(resp: HttpResponse) -> bool:
    return "websockets/" in server_header(resp).lower() or ws_complaint(resp) is not None


def proxy_name(resp: HttpResponse) -> str | None:
    """Which proxy/CDN wrote (or relayed) this answer, from `Server`, `Via`, `CF-RAY` or the page."""
    server = server_header(resp).lower()
    for name in PROXY_SERVERS:
        if name in server:
            return name
    if resp.header("cf-ray"):
        return "cloudflare"
    names = {n.lower() for n, _ in resp.headers}
    if any(n.startswith("x-envoy-") for n in names):
        return "envoy"
    if "x-amz-cf-id" in names:
        return "cloudfront"
    if resp.header("via"):
        return f"a proxy (Via: {resp.header('via')})"
    body = body_text(resp).lower()
    if "<center>nginx" in body:
        return "nginx"
    if "cloudflare" in body and "<html" in body:
        return "cloudflare"
    if "request forbidden by administrative rules" in body:
        return "haproxy"  # its built-in 403 page (HAProxy sends no Server header)
    return None


def describe_answer(resp: HttpResponse) -> str:
    server = server_header(resp)
    head = f"HTTP {resp.status} {resp.reason}".rstrip()
    body = " ".join(body_text(resp).split())  # one line; the reporter escapes what is left
    if len(body) > 120:
        body = body[:117] + "..."
    return head + (f" (Server: {server})" if server else "") + (f", body '{body}'" if body else "")


def json_body(data: bytes) -> Any:
    """Parsed JSON of a body, or None. Cached: every handshake looks at every OTA answer.

    Callers must not mutate the result (it is shared between calls).
    """
    return _json_cached(data) if len(data) <= 65_536 else _json_parse(data)


def _json_parse(data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None


_json_cached = functools.lru_cache(maxsize=512)(_json_parse)


# --- after a 101 --------------------------------------------------------------------------------


class Rejection(enum.StrEnum):
    AUTH_FAILED = "auth-failed"  # text 认证失败 (v0.8.5+)
    NO_IDENTITY = "no-identity"  # text 端口正常… (no device-id)
    BAD_DATA = "close-1007"  # Spring (xiaozhi java): 设备ID为空
    CRASH = "close-1011"  # handler raised: MultipleValuesError on a repeated header
    SILENT_CLOSE = "silent-close"  # close 1000 at once, no text: ≤ v0.8.3 auth failure
    POLICY_CLOSE = "policy-close"  # close 1008 / 3000-4999 before any data
    NO_HELLO = "no-hello"  # client hello, no server hello (unbound device, slow manager-api)


@dataclass(frozen=True, slots=True)
class AfterUpgrade:
    server_text: WsFrame | None = None
    server_close: WsFrame | None = None
    client_hello: WsFrame | None = None
    server_hello: WsFrame | None = None
    bind_text: str | None = None
    server_data_before_close: bool = False
    rejection: Rejection | None = None


def _json_type(frame: WsFrame) -> tuple[str | None, Any]:
    obj = json_body(frame.payload) if frame.opcode == Opcode.TEXT else None
    return (obj.get("type") if isinstance(obj, dict) else None), obj


def _is_auth_failed(text: str) -> bool:
    if text.startswith(AUTH_FAILED_TEXT):
        return True
    obj = json_body(text.encode("utf-8"))  # a10e94be-era alert {"type":"alert",…,"message":"认证失败"}
    return (
        isinstance(obj, dict) and obj.get("type") == "alert" and AUTH_FAILED_TEXT in str(obj.get("message"))
    )


def after_upgrade(hs: Handshake, xiaozhi: bool) -> AfterUpgrade:
    if hs.response is None or hs.response.status != 101:
        return AfterUpgrade()
    server_text = server_close = client_hello = server_hello = None
    bind_text: str | None = None
    data_before_close = False
    client_closed = False
    for f in hs.frames:
        kind, obj = _json_type(f)
        if f.direction == "client":
            if kind == "hello" and client_hello is None:
                client_hello = f
            client_closed = client_closed or f.opcode == Opcode.CLOSE
            continue
        if f.opcode == Opcode.CLOSE and server_close is None and not client_closed:
            server_close = f  # (a Close after the client's is the server's echo, not its verdict)
        elif f.opcode in (Opcode.TEXT, Opcode.BINARY) and server_close is None:
            data_before_close = True
        if f.opcode == Opcode.TEXT and server_text is None:
            server_text = f
        if kind == "hello" and server_hello is None:
            server_hello = f
        if kind == "stt" and isinstance(obj, dict) and bind_text is None:
            text = str(obj.get("text", ""))
            if "绑定" in text or "没有找到该设备" in text:
                bind_text = text
    facts = AfterUpgrade(server_text, server_close, client_hello, server_hello, bind_text, data_before_close)
    rejection = _rejection(hs, facts, xiaozhi)
    return AfterUpgrade(
        server_text, server_close, client_hello, server_hello, bind_text, data_before_close, rejection
    )


def _rejection(hs: Handshake, a: AfterUpgrade, xiaozhi: bool) -> Rejection | None:
    text = a.server_text.text if a.server_text is not None else None
    if text is not None and _is_auth_failed(text):
        return Rejection.AUTH_FAILED
    if text is not None and text.startswith(NO_IDENTITY_TEXT):
        return Rejection.NO_IDENTITY
    close = a.server_close
    if close is not None and a.server_hello is None and not a.server_data_before_close:
        code = close.close_code
        if code == 1007:
            return Rejection.BAD_DATA
        if code == 1011:
            return Rejection.CRASH
        if code in (1000, None) and _soon_after_101(hs, close):
            return Rejection.SILENT_CLOSE
        if code == 1008 or (code is not None and 3000 <= code <= 4999):
            return Rejection.POLICY_CLOSE
    if xiaozhi and a.server_hello is None and (a.bind_text or _hello_timed_out(hs, a)):
        return Rejection.NO_HELLO
    return None


def _soon_after_101(hs: Handshake, frame: WsFrame, limit_ns: int = 2_000_000_000) -> bool:
    start = hs.response.ts_ns if hs.response is not None else 0
    return not start or not frame.ts_ns or frame.ts_ns - start <= limit_ns


def _hello_timed_out(hs: Handshake, a: AfterUpgrade) -> bool:
    """The client said hello and gave up (closed) or waited ≥ 9 s (the firmware waits 10 s)."""
    if a.client_hello is None or a.server_close is not None:
        return False
    t = hs.transport
    waited = t.last_ns - a.client_hello.ts_ns if t.last_ns and a.client_hello.ts_ns else 0
    client_gave_up = (
        t.client_fin
        or t.client_rst
        or any(f.direction == "client" and f.opcode == Opcode.CLOSE for f in hs.frames)
    )
    return client_gave_up or waited >= 9_000_000_000


def frame_ref(frame: WsFrame | None) -> str:
    return f" (frame {frame.frame})" if frame is not None and frame.frame is not None else ""


# --- tokens -------------------------------------------------------------------------------------


def mac_neighbours(mac: str) -> list[str]:
    """The ESP32 derives its other interface MACs from the base MAC by adding 1-3 to the last
    octet (AP +1, BT +2, Ethernet +3), so a token issued for one of them is a common mix-up."""
    sep = ":" if ":" in mac else "-"
    parts = mac.split(sep)
    if len(parts) != 6:
        return []
    try:
        last = int(parts[5], 16)
    except ValueError:
        return []
    upper = parts[5].isupper()
    out = []
    for delta in (-3, -2, -1, 1, 2, 3):
        octet = f"{(last + delta) % 256:02x}"
        out.append(sep.join([*parts[:5], octet.upper() if upper else octet]))
    return out


def sign_token(key: str, client_id: str | None, device_id: str, ts: int) -> str:
    """xiaozhi AuthManager / manager-api: base64url-nopad(HMAC-SHA256(key, client|device|ts))."""
    msg = f"{client_id}|{device_id}|{ts}".encode()
    digest = hmac.new(key.encode("utf-8"), msg, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def token_ts(token: str) -> int | None:
    if not TOKEN_RE.match(token):
        return None
    return int(token.rsplit(".", 1)[1])


def verifies(key: str, token: str, client_id: str | None, device_id: str) -> bool:
    ts = token_ts(token)
    if ts is None:
        return False
    return hmac.compare_digest(sign_token(key, client_id, device_id, ts), token.split(".")[0])


# --- OTA ----------------------------------------------------------------------------------------


def ota_websocket(ota: OtaExchange) -> dict[str, Any] | None:
    """The `websocket` object of an OTA answer, if the answer is JSON and has one."""
    if ota.response is None:
        return None
    obj = json_body(ota.response.body)
    ws = obj.get("websocket") if isinstance(obj, dict) else None
    return ws if isinstance(ws, dict) else None


def hs_time(hs: Handshake) -> int:
    if hs.request is not None and hs.request.ts_ns:
        return hs.request.ts_ns
    return hs.transport.first_ns


def ota_time(ota: OtaExchange) -> int:
    return ota.request.ts_ns


_Row = tuple[int, str, str, Any]  # (capture time, lower-cased device id or "", client IP, item)


class _DeviceIndex:
    """Rows of (time, device, client IP, item) and, per device and per IP, where they are, so that
    "the same device (Device-Id, else client IP)" is a lookup: a fleet capture has hundreds of
    handshakes and OTA exchanges, and matching each against all of the others is quadratic."""

    __slots__ = ("_by_device", "_by_ip", "rows")

    def __init__(self, rows: list[_Row]) -> None:
        self.rows = rows
        self._by_device: dict[str, list[int]] = {}
        self._by_ip: dict[str, list[int]] = {}
        for i, (_ts, dev, ip, _item) in enumerate(rows):
            if dev:
                self._by_device.setdefault(dev, []).append(i)
            self._by_ip.setdefault(ip, []).append(i)

    def same_device(self, device: str, ip: str) -> list[_Row]:
        """Rows of `device` (lower-cased) where both name one, else of the same client IP, in
        row order. An empty Device-Id counts as none."""
        found = set(self._by_device.get(device, ())) if device else set()
        found.update(i for i in self._by_ip.get(ip, ()) if not device or not self.rows[i][1])
        return [self.rows[i] for i in sorted(found)]


class OtaIndex(_DeviceIndex):
    """A capture's OTA exchanges, keyed once for `ota_for` and by the token each one handed out."""

    __slots__ = ("by_token",)

    def __init__(self, otas: Sequence[OtaExchange]) -> None:
        devices = [(o.request.header("device-id") or "").strip().lower() for o in otas]
        super().__init__([(ota_time(o), dev, o.client.ip, o) for o, dev in zip(otas, devices, strict=True)])
        self.by_token: dict[str, list[OtaExchange]] = {}
        for o in otas:
            ws = ota_websocket(o)
            token = ws.get("token") if ws is not None else None
            if isinstance(token, str):
                self.by_token.setdefault(token, []).append(o)


class HandshakeIndex(_DeviceIndex):
    """A capture's handshakes in time order, keyed once for `next_handshake`."""

    __slots__ = ()

    def __init__(self, handshakes: Sequence[Handshake]) -> None:
        rows: list[_Row] = []
        for hs in handshakes:
            dev = identity(hs.request).device_id if hs.request is not None else None
            rows.append((hs_time(hs), (dev or "").lower(), hs.client.ip, hs))
        super().__init__(sorted(rows, key=lambda row: row[0]))


class CaptureIndex:
    """What rules look up across the whole capture, built once per diagnosis run: the OTA
    exchanges, and the handshakes by `Sec-WebSocket-Key` (a proxy forwards the key unchanged,
    so the two legs of one attempt through it share it)."""

    __slots__ = ("by_key", "idle_closes", "otas")

    def __init__(self, handshakes: Sequence[Handshake], otas: Sequence[OtaExchange]) -> None:
        self.otas = OtaIndex(otas)
        self.by_key: dict[str, list[Handshake]] = {}
        self.idle_closes: list[tuple[float, str | None]] = []  # (silence s, closer) of upgraded ones
        for hs in handshakes:
            key = hs.request.header("sec-websocket-key") if hs.request is not None else None
            if key and key.strip():
                self.by_key.setdefault(key.strip(), []).append(hs)
            silence = silence_before_close(hs)
            if silence is not None:
                self.idle_closes.append((silence, hs.transport.closed_by))


def silence_before_close(hs: Handshake) -> float | None:
    """Seconds without payload before the first FIN/RST of an upgraded connection."""
    t = hs.transport
    if hs.response is None or hs.response.status != 101 or not t.closed_ns or not t.last_data_ns:
        return None
    return (t.closed_ns - t.last_data_ns) / 1e9 if t.closed_ns >= t.last_data_ns else None


def ota_for(hs: Handshake, otas: OtaIndex) -> OtaExchange | None:
    """The last OTA exchange of the same device (Device-Id, else client IP) before this handshake."""
    device = identity(hs.request).device_id if hs.request is not None else None
    start = hs_time(hs)
    best: OtaExchange | None = None
    best_ts = 0
    for ts, _dev, _ip, ota in otas.same_device((device or "").lower(), hs.client.ip):
        if start and ts and ts > start:
            continue
        if best is None or ts >= best_ts:
            best, best_ts = ota, ts
    return best
