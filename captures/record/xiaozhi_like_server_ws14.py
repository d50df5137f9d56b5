#!/usr/bin/env python3
"""A re-creation of xiaozhi-esp32-server's WebSocket handshake and auth behaviour.

websockets 14.2 copy: taken from captures/record/xiaozhi_like_server.py and
adapted ONLY where the real server's code differs, so that it runs on websockets 14.2 (the
version xiaozhi-esp32-server pins) exactly like the real one:
  * serve() is called as the real core/websocket_server.py does:
    ``websockets.serve(self._handle_connection, host, port, process_request=self._http_response)``
    followed by ``await asyncio.Future()`` (no serve_forever, no other options);
  * the hook is the real one verbatim: ``request_headers.headers.get("connection", "")``,
    ``websocket.respond(200, "Server is running\n")`` (an int status, not HTTPStatus);
  * the startup log prints websockets.__version__ so the run proves it is 14.2.
Everything else (identity extraction, auth, hello) is unchanged.

This is NOT the real xiaozhi-esp32-server. It re-implements, on top of the real
``websockets`` library, exactly the parts of
``xinnan-tech/xiaozhi-esp32-server`` (v0.8.5 .. v0.9.6) that decide what goes on the
wire during and right after the opening handshake, as documented in
/work/shared/docs/xiaozhi-protocol.md (referred to as "spec" below):

* spec 1.1 -- ``websockets.serve(handler, host, port, process_request=_http_response)``,
  no other serve() options (library defaults: compression="deflate", no origins,
  no subprotocols).  The URL path is not checked.
* spec 1.2 -- ``process_request`` answers ``200 "Server is running\\n"`` unless the
  ``Connection`` header, lower-cased, is *exactly* ``upgrade``.  A repeated
  ``Connection`` header makes ``Headers.get`` raise -> library answers 500.
* spec 1.3 -- identity: ``headers = dict(websocket.request.headers)`` (raises
  MultipleValuesError on a repeated header -> handler fails -> library closes 1011);
  no ``device-id`` header -> ``parse_qs`` of the query string; ``device-id``,
  ``client-id``, ``authorization`` are copied from the query (``Headers.__setitem__``
  appends); no device-id anywhere -> text ``端口正常，如需测试连接，请启动digital-human测试``
  and close 1000.
* spec 1.4 -- auth: disabled -> accept; ``allowed_devices`` exact (case-sensitive)
  membership -> accept; ``authorization`` must start with ``Bearer `` ; token is
  ``base64url_nopad(HMAC-SHA256(key, f"{client_id}|{device_id}|{ts}")) + "." + ts``
  (missing client id signed as the string ``None``), expiry 30 days (2 592 000 s),
  no check for future timestamps.  Failure -> send text ``认证失败`` then close (1000);
  nothing is logged about the reason.
* spec 1.5 -- after auth: client ``hello`` -> server hello JSON (Python json.dumps
  default separators), echoing the client's ``audio_params``; ``features.mcp`` true
  -> an MCP ``initialize`` request follows.  Non-JSON text is echoed back.

Differences from the real server that are visible on the wire:

* The library version is whatever is installed (the captures in this directory were
  recorded with websockets 17.4; xiaozhi pins 14.2).  17.x answers malformed requests
  with 405/505/414/431 where 14.2 silently closes (spec section 2), and the ``Server``
  header reads ``Python/3.11 websockets/17.4``.
* No per-device config loading / manager-api lookup / audio pipeline (spec 1.5): the
  hello is answered at once.  ``--bind-code 123456`` stands in for a manager-api that
  answered ``/config/agent-models`` with 10042 (device not bound, spec 1.5 / 5): every
  message, the hello included, is discarded, and the first one is answered with the
  ``check_bind_device`` text frames (``stt`` with ``请登录控制面板，输入123456，绑定设备``,
  then ``llm`` and ``tts`` ``start``, as ``send_stt_message`` sends them: ``json.dumps``
  defaults, i.e. ASCII-escaped, punctuation stripped from the ends); the bind-code audio
  that follows on the real server is not sent.

Usage::

    python3 xiaozhi_like_server.py --host 127.0.0.1 --port 8000 \\
        [--auth] [--auth-key wsdiag-test-key] [--allowed-device 11:22:33:44:55:66]
        [--bind-code 123456]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
import uuid
from urllib.parse import parse_qs, urlparse

import websockets
from websockets.asyncio.server import ServerConnection  # type hints only

PORT_NORMAL_TEXT = "端口正常，如需测试连接，请启动digital-human测试"  # spec 1.3 (>= v0.9.4)
AUTH_FAILED_TEXT = "认证失败"  # spec 1.4
DEFAULT_EXPIRE = 60 * 60 * 24 * 30  # spec 1.4: None/0/negative -> 30 days


class AuthenticationError(Exception):
    pass


class AuthManager:
    """Same token scheme as xiaozhi ``core/auth.py`` ``AuthManager`` (spec 1.4)."""

    def __init__(self, secret_key: str, expire_seconds: int | None = None) -> None:
        if not expire_seconds or expire_seconds < 0:
            expire_seconds = DEFAULT_EXPIRE
        self.secret_key = secret_key
        self.expire_seconds = expire_seconds

    def _sign(self, content: str) -> str:
        sig = hmac.new(self.secret_key.encode(), content.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(sig).decode().rstrip("=")

    def generate_token(self, client_id: str, username: str, ts: int | None = None) -> str:
        ts = int(time.time()) if ts is None else ts
        return f"{self._sign(f'{client_id}|{username}|{ts}')}.{ts}"

    def verify_token(self, token: str, client_id: str | None, username: str) -> bool:
        try:
            parts = token.split(".")
            if len(parts) != 2:
                return False
            signature, ts_str = parts
            ts = int(ts_str)
            if int(time.time()) - ts > self.expire_seconds:
                return False  # expired; no check for future timestamps (spec 1.4)
            expected = self._sign(f"{client_id}|{username}|{ts}")
            return hmac.compare_digest(signature, expected)
        except Exception:
            return False


class XiaozhiLikeServer:
    def __init__(self, auth_enabled: bool, auth_key: str, allowed_devices: list[str],
                 expire_seconds: int | None, bind_code: str | None = None) -> None:
        self.auth_enable = auth_enabled
        self.bind_code = bind_code
        self.allowed_devices = set(allowed_devices)
        self.auth = AuthManager(auth_key, expire_seconds)
        self.log = logging.getLogger("xiaozhi-like")

    # spec 1.2 ------------------------------------------------------------------
    async def _http_response(self, websocket, request_headers):
        # verbatim from xiaozhi-esp32-server core/websocket_server.py (_http_response).
        # Headers.get raises MultipleValuesError on a repeated Connection header;
        # the exception escapes and the library answers 500 (spec 1.2 / 2).
        if request_headers.headers.get("connection", "").lower() == "upgrade":
            return None
        else:
            return websocket.respond(200, "Server is running\n")

    # spec 1.4 ------------------------------------------------------------------
    async def _handle_auth(self, websocket: ServerConnection) -> None:
        if not self.auth_enable:
            return
        headers = dict(websocket.request.headers)  # may raise MultipleValuesError
        device_id = headers.get("device-id")
        client_id = headers.get("client-id")
        if self.allowed_devices and device_id in self.allowed_devices:
            return
        auth_header = headers.get("authorization", "")
        if not auth_header.startswith("Bearer "):
            raise AuthenticationError("Missing or invalid Authorization header")
        token = auth_header.split(" ", 1)[1]
        if not self.auth.verify_token(token, client_id=client_id, username=device_id):
            raise AuthenticationError("Invalid token")

    # spec 1.3 + 1.5 --------------------------------------------------------------
    async def _handle_connection(self, websocket: ServerConnection) -> None:
        # Outside any try, like the real code: a repeated header raises here and the
        # library closes with 1011 (spec 1.3 item 2).
        headers = dict(websocket.request.headers)
        if headers.get("device-id") is None:
            path = websocket.request.path
            if not path:
                self.log.error("无法获取请求路径")
                await websocket.close()
                return
            query = parse_qs(urlparse(path).query)
            if "device-id" not in query:
                await websocket.send(PORT_NORMAL_TEXT)
                await websocket.close()
                return
            websocket.request.headers["device-id"] = query["device-id"][0]
            if "client-id" in query:
                websocket.request.headers["client-id"] = query["client-id"][0]
            if "authorization" in query:
                websocket.request.headers["authorization"] = query["authorization"][0]
        try:
            await self._handle_auth(websocket)
        except AuthenticationError:
            await websocket.send(AUTH_FAILED_TEXT)
            await websocket.close()
            return
        self.log.info("conn - Headers: %s", dict(websocket.request.headers))
        await self._session(websocket)

    async def _session(self, websocket: ServerConnection) -> None:
        session_id = str(uuid.uuid4())
        if self.bind_code:
            await self._unbound_session(websocket, session_id)
            return
        try:
            async for message in websocket:
                if isinstance(message, bytes):
                    continue  # audio; not modelled
                try:
                    msg = json.loads(message)
                except json.JSONDecodeError:
                    await websocket.send(message)  # non-JSON text is echoed (spec 1.5)
                    continue
                if isinstance(msg, dict) and msg.get("type") == "hello":
                    audio = {"format": "opus", "sample_rate": 24000, "channels": 1,
                             "frame_duration": 60}
                    if isinstance(msg.get("audio_params"), dict):
                        audio = msg["audio_params"]
                    await websocket.send(json.dumps({
                        "type": "hello", "version": 1, "transport": "websocket",
                        "audio_params": audio, "session_id": session_id,
                    }, ensure_ascii=False))
                    if (msg.get("features") or {}).get("mcp"):
                        host = websocket.local_address[0]
                        await websocket.send(json.dumps({
                            "type": "mcp", "payload": {
                                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                                "params": {
                                    "protocolVersion": "2024-11-05",
                                    "capabilities": {
                                        "roots": {"listChanged": True}, "sampling": {},
                                        "vision": {
                                            "url": f"http://{host}:8003/mcp/vision/explain",
                                            "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
                                                     "eyJkZXZpY2VfaWQiOiJ3c2RpYWctdGVzdCJ9."
                                                     "wsdiag-made-up-signature",
                                        },
                                    },
                                    "clientInfo": {"name": "XiaozhiClient", "version": "1.0.0"},
                                },
                            }}, ensure_ascii=False))
        except websockets.ConnectionClosed:
            pass

    async def _unbound_session(self, websocket: ServerConnection, session_id: str) -> None:
        # spec 1.5: need_bind -> every message (hello included) is discarded; the first one
        # triggers check_bind_device -> send_stt_message (stt, llm, tts start).
        prompted = False
        try:
            async for _message in websocket:
                if prompted:
                    continue
                prompted = True
                text = f"请登录控制面板，输入{self.bind_code}，绑定设备。".rstrip("。")
                await websocket.send(json.dumps({"type": "stt", "text": text, "session_id": session_id}))
                await websocket.send(json.dumps({"type": "llm", "text": "😊", "emotion": "happy",
                                                 "session_id": session_id}))
                await websocket.send(json.dumps({"type": "tts", "state": "start",
                                                 "session_id": session_id}))
        except websockets.ConnectionClosed:
            pass

    async def run(self, host: str, port: int) -> None:
        async with websockets.serve(
            self._handle_connection, host, port, process_request=self._http_response
        ):
            self.log.info("listening on %s:%s (websockets %s)", host, port, websockets.__version__)
            await asyncio.Future()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--auth", action="store_true", help="server.auth.enabled = true")
    ap.add_argument("--auth-key", default="wsdiag-test-key", help="server.auth_key")
    ap.add_argument("--allowed-device", action="append", default=[],
                    help="server.auth.allowed_devices entry (repeatable)")
    ap.add_argument("--expire-seconds", type=int, default=None)
    ap.add_argument("--bind-code", default=None,
                    help="device not bound (manager-api 10042): discard messages, send the bind prompt")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    srv = XiaozhiLikeServer(args.auth, args.auth_key, args.allowed_device, args.expire_seconds,
                            args.bind_code)
    asyncio.run(srv.run(args.host, args.port))


if __name__ == "__main__":
    main()
