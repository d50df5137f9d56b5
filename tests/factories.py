"""Known-good values to mutate in tests: the ESP32's exact upgrade request (xiaozhi-protocol.md §3.4),
xiaozhi-server's answers (§1.2-1.5, §2) and OTA exchanges (§5). One change per test."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from analyzer.config import Config
from analyzer.model import (
    Diagnosis,
    Endpoint,
    Handshake,
    Header,
    HttpRequest,
    HttpResponse,
    Opcode,
    OtaExchange,
    Payload,
    Transport,
    WsFrame,
)
from analyzer.rules import diagnose
from analyzer.rules._facts import accept_for, sign_token

MS = 1_000_000
TS = 1_765_432_000  # token issue time (Unix s)
T0 = (TS + 100) * 1_000_000_000  # capture time of the handshake (ns)
SECRET = "0123456789abcdef-test-secret"
DEVICE = "a0:b7:65:12:34:56"
CLIENT = "3f2b8c1e-9a7d-4e21-b0c4-5d6e7f809a1b"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_SERVER = "Python/3.10 websockets/14.2"
CLIENT_EP = Endpoint("192.168.1.23", 51234)
SERVER_EP = Endpoint("192.168.1.10", 8000)
ESP32_MAC = "a0:b7:65:12:34:56"


def token_for(client: str | None = CLIENT, device: str = DEVICE, ts: int = TS, key: str = SECRET) -> str:
    return f"{sign_token(key, client, device, ts)}.{ts}"


TOKEN = token_for()


def esp32_headers() -> list[Header]:
    """The firmware's header order: Host first, then the std::map's sorted order."""
    return [
        ("Host", SERVER_EP.ip),
        ("Authorization", f"Bearer {TOKEN}"),
        ("Client-Id", CLIENT),
        ("Connection", "Upgrade"),
        ("Device-Id", DEVICE),
        ("Protocol-Version", "1"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
        ("Upgrade", "websocket"),
    ]


def make_request(
    *,
    set_headers: Mapping[str, str | None] | None = None,
    add_headers: Iterable[Header] = (),
    headers: Sequence[Header] | None = None,
    **overrides: Any,
) -> HttpRequest:
    """The ESP32 request; `set_headers` replaces (None removes) by case-insensitive name."""
    hdrs = list(esp32_headers() if headers is None else headers)
    for name, value in (set_headers or {}).items():
        idx = [i for i, (n, _) in enumerate(hdrs) if n.lower() == name.lower()]
        if value is None:
            hdrs = [h for i, h in enumerate(hdrs) if i not in idx]
        elif idx:
            hdrs[idx[0]] = (hdrs[idx[0]][0], value)
        else:
            hdrs.append((name, value))
    hdrs.extend(add_headers)
    fields: dict[str, Any] = {
        "method": "GET",
        "target": "/xiaozhi/v1/",
        "version": "HTTP/1.1",
        "ts_ns": T0,
        "frames": (4,),
    }
    fields.update(overrides)
    return HttpRequest(headers=tuple(hdrs), **fields)


def make_response(
    status: int,
    body: bytes | str = b"",
    *,
    reason: str = "",
    server: str | None = WS_SERVER,
    headers: Sequence[Header] = (),
) -> HttpResponse:
    raw = body.encode("utf-8") if isinstance(body, str) else body
    hdrs: list[Header] = []
    if server is not None:
        hdrs.append(("Server", server))
    hdrs.extend(headers)
    if status != 101:
        hdrs += [("Content-Length", str(len(raw))), ("Connection", "close")]
    return HttpResponse(
        "HTTP/1.1",
        status,
        reason or _REASONS.get(status, ""),
        tuple(hdrs),
        raw,
        ts_ns=T0 + 2 * MS,
        frames=(6,),
    )


_REASONS = {
    101: "Switching Protocols",
    200: "OK",
    301: "Moved Permanently",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    426: "Upgrade Required",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def switching(key: str = KEY, extra: Sequence[Header] = (), accept: str | None = None) -> HttpResponse:
    headers = [
        ("Date", "Mon, 08 Dec 2025 05:35:00 GMT"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", accept_for(key) if accept is None else accept),
        *extra,
    ]
    return make_response(101, headers=headers)


def ws_failure(status: int, complaint: str | None) -> HttpResponse:
    """An answer written by the websockets library's `reject()`."""
    if complaint is None:
        body = "Failed to open a WebSocket connection.\nSee server log for more information.\n"
    else:
        body = f"Failed to open a WebSocket connection: {complaint}.\n"
    extra = [("Upgrade", "websocket")] if status == 426 else []
    return make_response(status, body, headers=[("Content-Type", "text/plain; charset=utf-8"), *extra])


def server_is_running(server: str | None = WS_SERVER) -> HttpResponse:
    return make_response(
        200, "Server is running\n", server=server, headers=[("Content-Type", "text/plain; charset=utf-8")]
    )


def frame(direction: str, opcode: int, payload: bytes | str, ms: int, **kw: Any) -> WsFrame:
    data = payload.encode("utf-8") if isinstance(payload, str) else payload
    return WsFrame(
        direction=direction,
        ts_ns=T0 + ms * MS,
        frame=10 + ms,
        fin=True,
        rsv1=False,
        rsv2=False,
        rsv3=False,
        opcode=opcode,
        masked=direction == "client",
        length=len(data),
        payload=data,
        **kw,
    )


def text(direction: str, payload: str | dict[str, Any], ms: int = 5) -> WsFrame:
    body = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return frame(direction, Opcode.TEXT, body, ms)


def close(direction: str, code: int | None = 1000, reason: str = "", ms: int = 6) -> WsFrame:
    payload = b"" if code is None else code.to_bytes(2, "big") + reason.encode("utf-8")
    return frame(direction, Opcode.CLOSE, payload, ms, close_code=code, close_reason=reason or None)


CLIENT_HELLO = {
    "type": "hello",
    "version": 1,
    "features": {"mcp": True},
    "transport": "websocket",
    "audio_params": {"format": "opus", "sample_rate": 16000, "channels": 1, "frame_duration": 60},
}
SERVER_HELLO = {
    "type": "hello",
    "version": 1,
    "transport": "websocket",
    "session_id": "abc",
    "audio_params": {"format": "opus", "sample_rate": 16000, "channels": 1, "frame_duration": 60},
}


def hello_frames() -> tuple[WsFrame, ...]:
    return (text("client", CLIENT_HELLO, 3), text("server", SERVER_HELLO, 40))


def auth_failed_frames() -> tuple[WsFrame, ...]:
    return (text("server", "认证失败", 3), text("client", CLIENT_HELLO, 4), close("server", 1000, ms=5))


def no_identity_frames(new: bool = True) -> tuple[WsFrame, ...]:
    suffix = "请启动digital-human测试" if new else "请使用test_page.html"
    return (text("server", f"端口正常\uff0c如需测试连接\uff0c{suffix}", 3), close("server", 1000, ms=4))


def good_transport(**overrides: Any) -> Transport:
    fields: dict[str, Any] = {
        "syn": True,
        "syn_ack": True,
        "client_payload": Payload.HTTP,
        "server_payload": Payload.HTTP,
        "client_bytes": 300,
        "server_bytes": 200,
        "first_ns": T0 - 3 * MS,
        "last_ns": T0 + 60 * MS,
    }
    fields.update(overrides)
    return Transport(**fields)


def make_handshake(
    request: HttpRequest | None = None,
    response: HttpResponse | None = None,
    frames: Sequence[WsFrame] | None = None,
    *,
    no_request: bool = False,
    no_response: bool = False,
    transport: Transport | None = None,
    **overrides: Any,
) -> Handshake:
    """A good ESP32 → xiaozhi-server handshake (101, hello both ways) unless told otherwise."""
    req = None if no_request else (request or make_request())
    resp = None if no_response else (response or switching())
    if frames is None:
        frames = hello_frames() if resp is not None and resp.status == 101 else ()
    fields: dict[str, Any] = {
        "tcp_stream": 0,
        "client": CLIENT_EP,
        "server": SERVER_EP,
        "transport": transport or good_transport(),
    }
    fields.update(overrides)
    return Handshake(request=req, response=resp, frames=tuple(frames), **fields)


def syn_only(*, rst: bool = False, retries: int = 3) -> Handshake:
    t = Transport(
        syn=True, server_rst=rst, syn_retries=0 if rst else retries, first_ns=T0, last_ns=T0 + 7000 * MS
    )
    return make_handshake(no_request=True, no_response=True, transport=t)


def silent_drop(request: HttpRequest | None = None, *, rst: bool = False) -> Handshake:
    t = good_transport(server_payload=Payload.NONE, server_bytes=0, server_fin=not rst, server_rst=rst)
    return make_handshake(request, no_response=True, transport=t)


def make_ota(
    *,
    url: str | None = "ws://192.168.1.10:8000/xiaozhi/v1/",
    token: str | None = TOKEN,
    device: str = DEVICE,
    client: str | None = CLIENT,
    ts_ns: int = T0 - 5_000 * MS,
    body: bytes | None = None,
) -> OtaExchange:
    headers: list[Header] = [("Host", "192.168.1.10:8002"), ("Device-Id", device)]
    if client is not None:
        headers.append(("Client-Id", client))
    req = HttpRequest("POST", "/xiaozhi/ota/", "HTTP/1.1", tuple(headers), b"{}", ts_ns=ts_ns)
    if body is None:
        ws: dict[str, Any] = {}
        if url is not None:
            ws["url"] = url
        if token is not None:
            ws["token"] = token
        body = json.dumps({"server_time": {"timestamp": 0}, "websocket": ws}).encode()
    resp = HttpResponse(
        "HTTP/1.1", 200, "OK", (("Content-Type", "application/json"),), body, ts_ns=ts_ns + MS
    )
    return OtaExchange(
        tcp_stream=9, client=CLIENT_EP, server=Endpoint("192.168.1.10", 8002), request=req, response=resp
    )


def diag(
    hs: Handshake,
    config: Config | None = None,
    *,
    otas: Sequence[OtaExchange] = (),
    others: Sequence[Handshake] = (),
    now_ns: int | None = None,
) -> Diagnosis:
    return diagnose([hs, *others], otas, config or Config(), now_ns)[0]


def names(d: Diagnosis, severity: str | None = None) -> list[str]:
    return [f.name for f in d.findings if severity is None or f.severity == severity]


def cause(d: Diagnosis) -> str | None:
    return d.cause.name if d.cause is not None else None


def with_request(hs: Handshake, **changes: Any) -> Handshake:
    assert hs.request is not None
    return replace(hs, request=replace(hs.request, **changes))
