#!/usr/bin/env python3
"""Auxiliary servers used by record.py (all bind to loopback only).

Sub-commands (each runs until killed):

  ota            aiohttp re-creation of xiaozhi's single-module OTA endpoint
                 (POST /xiaozhi/ota/, spec 1.1 / 3.3 / 5).  No route for /xiaozhi/ota
                 (no slash): aiohttp answers its own 404.
  wrong-service  aiohttp server that answers every GET with HTTP 200 and a
                 manager-api-style JSON body {"code":401,...} (spec 5, last bullets).
  ws-origins     websockets serve(origins=[...]) echo server (library's 403).
  ws-subproto    websockets serve(subprotocols=["chat"]) echo server.
  ws-quiet       websockets echo server with its keep-alive pings off (ping_interval=None).
  ws-tls         websockets echo server behind a Python ssl context (wss only).
  raw-silent     TCP server that reads the request and never answers.
  raw-reset      TCP server that reads the request and closes with SO_LINGER 0 (RST).
  raw-fin        TCP server that reads the request and closes normally (FIN).
  raw-bad-accept TCP server that answers the upgrade with a 101 whose Sec-WebSocket-Accept
                 is base64(SHA-1(key)) -- the GUID of RFC 6455 4.2.2 forgotten -- then
                 waits for the client to close.
  manager-ota    aiohttp stand-in for the manager-api OTA (POST /xiaozhi/ota/, spec 5):
                 blank Device-Id -> 200 {"error":"Device ID is required"}; Device-Id not
                 matching ^([0-9A-Za-z]{2}[:-]){5}([0-9A-Za-z]{2})$ -> 200
                 {"error":"Invalid device ID"}; else the usual OTA answer.

The Starlette app for uvicorn is ``servers:starlette_app``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import socket
import ssl
import struct
import sys
import time

# ----------------------------------------------------------------------------- OTA

def run_ota(host: str, port: int, ws_url: str, auth: bool, key: str) -> None:
    from aiohttp import web

    sys.path.insert(0, __file__.rsplit("/", 1)[0])
    from xiaozhi_like_server import AuthManager

    mgr = AuthManager(key)

    async def ota_post(request: web.Request) -> web.Response:
        device_id = request.headers.get("device-id", "")
        client_id = request.headers.get("client-id", "")
        if not device_id or not client_id:
            # single-module ota_handler: missing ids -> 200 + this body (spec 6 row 20)
            return web.json_response({"success": False, "message": "request error."})
        await request.read()
        token = mgr.generate_token(client_id, device_id) if auth else ""
        return web.json_response({
            "server_time": {"timestamp": int(time.time() * 1000), "timeZone": "Asia/Shanghai",
                            "timezone_offset": 480},
            "firmware": {"version": "2.4.2", "url": ""},
            "websocket": {"url": ws_url, "token": token},
        })

    async def ota_get(request: web.Request) -> web.Response:
        return web.Response(text=f"OTA接口运行正常，websocket地址是：{ws_url}")

    app = web.Application()
    app.router.add_post("/xiaozhi/ota/", ota_post)
    app.router.add_get("/xiaozhi/ota/", ota_get)
    web.run_app(app, host=host, port=port, print=None, handle_signals=True)


def run_manager_ota(host: str, port: int, ws_url: str) -> None:
    import re

    from aiohttp import web

    mac_re = re.compile(r"^([0-9A-Za-z]{2}[:-]){5}([0-9A-Za-z]{2})$")  # OTAController (spec 5)

    def spring_json(obj: dict) -> web.Response:  # Jackson writes compact JSON
        return web.Response(text=json.dumps(obj, separators=(",", ":"), ensure_ascii=False),
                            content_type="application/json")

    async def ota_post(request: web.Request) -> web.Response:
        await request.read()
        device_id = request.headers.get("device-id", "")
        if not device_id.strip():
            return spring_json({"error": "Device ID is required"})
        if not mac_re.match(device_id):
            return spring_json({"error": "Invalid device ID"})
        return spring_json({
            "server_time": {"timestamp": int(time.time() * 1000), "timeZone": "Asia/Shanghai",
                            "timezone_offset": 480},
            "firmware": {"version": "2.4.2", "url": ""},
            "websocket": {"url": ws_url, "token": ""},
        })

    app = web.Application()
    app.router.add_post("/xiaozhi/ota/", ota_post)
    web.run_app(app, host=host, port=port, print=None)


def run_wrong_service(host: str, port: int) -> None:
    from aiohttp import web

    async def any_get(request: web.Request) -> web.Response:
        return web.json_response({"code": 401, "msg": "未授权，请先登录"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", any_get)
    web.run_app(app, host=host, port=port, print=None)


# ------------------------------------------------------------------------ Starlette

def _make_starlette_app():
    from starlette.applications import Starlette
    from starlette.routing import WebSocketRoute
    from starlette.websockets import WebSocket

    async def ws_echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except Exception:
            pass

    async def ws_reject(websocket: WebSocket) -> None:
        # Closing before accept(): the ASGI server answers the handshake with 403.
        await websocket.close(code=1008)

    return Starlette(routes=[WebSocketRoute("/ws", ws_echo),
                             WebSocketRoute("/ws-closed", ws_reject)])


try:
    starlette_app = _make_starlette_app()
except Exception:  # pragma: no cover - starlette missing
    starlette_app = None


# ----------------------------------------------------------------------- websockets

async def _echo(ws) -> None:
    try:
        async for m in ws:
            await ws.send(m)
    except Exception:
        pass


async def _serve_ws(host: str, port: int, **kw) -> None:
    from websockets.asyncio.server import serve
    async with serve(_echo, host, port, **kw) as srv:
        await srv.serve_forever()


# ---------------------------------------------------------------------------- raw

def run_raw(host: str, port: int, mode: str) -> None:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, port))
    ls.listen(8)
    held = []
    while True:
        c, _ = ls.accept()
        c.settimeout(5)
        buf = b""
        try:
            while b"\r\n\r\n" not in buf:
                d = c.recv(4096)
                if not d:
                    break
                buf += d
        except OSError:
            pass
        if mode == "silent":
            held.append(c)  # never answer, never close
        elif mode == "bad-accept":
            key = next((ln.split(b":", 1)[1].strip() for ln in buf.split(b"\r\n")
                        if ln.lower().startswith(b"sec-websocket-key:")), b"")
            wrong = base64.b64encode(hashlib.sha1(key).digest()).decode()  # GUID forgotten
            try:
                c.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Accept: {wrong}\r\n\r\n").encode())
                while c.recv(4096):  # until the client gives up and closes
                    pass
            except OSError:
                pass
            c.close()
        elif mode == "reset":
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            c.close()
        else:
            c.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ws-url", default="")
    ap.add_argument("--auth", action="store_true")
    ap.add_argument("--auth-key", default="wsdiag-test-key")
    ap.add_argument("--origin", action="append", default=[])
    ap.add_argument("--certfile")
    ap.add_argument("--keyfile")
    a = ap.parse_args()
    if a.mode == "ota":
        run_ota(a.host, a.port, a.ws_url, a.auth, a.auth_key)
    elif a.mode == "wrong-service":
        run_wrong_service(a.host, a.port)
    elif a.mode == "manager-ota":
        run_manager_ota(a.host, a.port, a.ws_url)
    elif a.mode == "ws-origins":
        asyncio.run(_serve_ws(a.host, a.port, origins=a.origin or ["http://allowed.example"]))
    elif a.mode == "ws-subproto":
        asyncio.run(_serve_ws(a.host, a.port, subprotocols=["chat"]))
    elif a.mode == "ws-quiet":
        asyncio.run(_serve_ws(a.host, a.port, ping_interval=None))
    elif a.mode == "ws-tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.certfile, a.keyfile)
        asyncio.run(_serve_ws(a.host, a.port, ssl=ctx))
    elif a.mode.startswith("raw-"):
        run_raw(a.host, a.port, a.mode[4:])
    else:
        raise SystemExit(f"unknown mode {a.mode}")


if __name__ == "__main__":
    main()


def make_socketio_app():  # uvicorn --factory entry point
    """A python-socketio ASGI server (recording only: `pip install python-socketio`). Its WebSocket
    transport expects Engine.IO (`/socket.io/?EIO=4&transport=websocket`); a plain WebSocket
    client is refused before accept, which uvicorn answers with 403."""
    import socketio

    return socketio.ASGIApp(socketio.AsyncServer(async_mode="asgi"))
