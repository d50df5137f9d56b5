#!/usr/bin/env python3
"""Record loopback packet captures of real WebSocket handshakes for wsdiag.

For every scenario this script
  1. picks ports (the realistic ones -- 8000 ws, 8003 OTA, 8080 proxy, 8002
     manager-api -- when free, else any free port),
  2. starts the real server software (websockets, aiohttp, uvicorn+Starlette, nginx,
     raw sockets) on 127.0.0.1 / ::1 and waits until it listens (read from
     /proc/net/tcp*, so no probe connection ends up in the capture),
  3. starts ``tcpdump -i lo -U -s 0 -w FILE 'tcp port P or ...'`` and waits for
     "listening on",
  4. runs the client (a raw-socket ESP32 firmware re-creation, the websockets
     client, ...),
  5. stops tcpdump with SIGINT and the servers with SIGTERM.

Only 127.0.0.1 and ::1 are ever contacted.  Every client has a timeout.

Usage:  python3 captures/record/record.py [--only NAME[,NAME...]] [--out captures/] [--list]

Needs root (tcpdump on lo), tcpdump, nginx, openssl, python3 with websockets,
aiohttp, uvicorn, starlette.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import itertools
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable
AUTH_KEY = "wsdiag-test-key"

# Made-up but realistic identities (ESP32: lower-case MAC + UUIDv4, spec 3.2).
DEV = "a0:b7:65:12:34:56"
CID = "3f2b8c1e-9a7d-4e21-b0c4-5d6e7f809a1b"
DEV_OTHER = "a0:b7:65:12:34:57"
PATH = "/xiaozhi/v1/"

FIRMWARE_HELLO = ('{"type":"hello","version":1,"features":{"mcp":true,"glyph_push":false},'
                  '"transport":"websocket","audio_params":{"format":"opus","sample_rate":16000,'
                  '"channels":1,"frame_duration":60}}')  # spec 3.5


def make_token(client_id: str | None, device_id: str, ts: int | None = None, key: str = AUTH_KEY) -> str:
    """xiaozhi AuthManager token: base64url_nopad(HMAC-SHA256(key, "cid|did|ts")) + "." + ts."""
    ts = int(time.time()) if ts is None else ts
    sig = hmac.new(key.encode(), f"{client_id}|{device_id}|{ts}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(sig).decode().rstrip("=") + f".{ts}"


# =============================================================================== helpers

def _listening(port: int, v6: bool, pid: int | None = None) -> bool:
    """Is something listening on ``port``?  With ``pid``: in that process's network namespace."""
    net = f"/proc/{pid}/net" if pid else "/proc/net"
    files = [f"{net}/tcp6"] if v6 else [f"{net}/tcp"]
    for fn in files:
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    parts = line.split()
                    local, state = parts[1], parts[3]
                    if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                        return True
        except FileNotFoundError:
            pass
    return False


def _port_in_use(port: int) -> bool:
    return _listening(port, False) or _listening(port, True)


def free_port(preferred: int | None = None, v6: bool = False, taken: set[int] = frozenset()) -> int:
    if preferred and preferred not in taken and not _port_in_use(preferred):
        fam, host = (socket.AF_INET6, "::1") if v6 else (socket.AF_INET, "127.0.0.1")
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, preferred))
                return preferred
            except OSError:
                pass
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            p = s.getsockname()[1]
        if p not in taken:
            return p


class Ctx:
    """Per-scenario resources: ports, server processes, the tcpdump capture."""

    def __init__(self, name: str, out: Path, tmp: Path) -> None:
        self.name = name
        self.out = out
        self.tmp = tmp / name
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.ports: set[int] = set()
        self.notes: list[str] = []

    # ------------------------------------------------------------------ ports
    def port(self, preferred: int | None = None, v6: bool = False) -> int:
        p = free_port(preferred, v6, self.ports)
        self.ports.add(p)
        return p

    # ---------------------------------------------------------------- servers
    def start(self, label: str, argv: list[str], port: int | None, v6: bool = False,
              cwd: Path | None = None, netns: str | None = None) -> subprocess.Popen:
        log = open(self.tmp / f"{label}.log", "wb")
        if netns:
            argv = ["ip", "netns", "exec", netns, *argv]  # exec()s argv: p.pid is the server
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=cwd or HERE,
                             start_new_session=True)
        self.procs.append((label, p))
        if port is not None:
            deadline = time.time() + 8
            while not _listening(port, v6, p.pid if netns else None):
                if p.poll() is not None:
                    raise RuntimeError(f"{label} exited: {(self.tmp / f'{label}.log').read_text()[-2000:]}")
                if time.time() > deadline:
                    raise RuntimeError(f"{label} not listening on {port}")
                time.sleep(0.05)
        return p

    def xiaozhi(self, port: int, *, auth: bool = False, host: str = "127.0.0.1",
                extra: list[str] | None = None, netns: str | None = None) -> None:
        argv = [PY, str(HERE / "xiaozhi_like_server.py"), "--host", host, "--port", str(port),
                "--auth-key", AUTH_KEY] + (["--auth"] if auth else []) + (extra or [])
        self.start("xiaozhi", argv, port, v6=":" in host, netns=netns)

    def aux(self, mode: str, port: int, *args: str, host: str = "127.0.0.1") -> None:
        self.start(mode, [PY, str(HERE / "servers.py"), mode, "--host", host, "--port", str(port),
                          *args], port, v6=":" in host)

    def cert(self) -> tuple[Path, Path]:
        c, k = self.tmp / "cert.pem", self.tmp / "key.pem"
        if not c.exists():
            subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                            "-subj", "/CN=localhost", "-keyout", str(k), "-out", str(c)],
                           check=True, capture_output=True)
        return c, k

    def nginx(self, conf: str, port: int, backend: str = "") -> None:
        ntmp = self.tmp / "nginx"
        ntmp.mkdir(exist_ok=True)
        text = (HERE / "nginx" / conf).read_text()
        c, k = self.cert() if "@CERT@" in text else (Path(""), Path(""))
        text = (text.replace("@PORT@", str(port)).replace("@BACKEND@", backend)
                .replace("@TMP@", str(ntmp)).replace("@CERT@", str(c)).replace("@KEY@", str(k)))
        rendered = ntmp / conf
        rendered.write_text(text)
        self.start("nginx", ["nginx", "-e", "stderr", "-p", str(ntmp), "-c", str(rendered)], port)

    # ---------------------------------------------------------------- capture
    @contextlib.contextmanager
    def capture(self, *ports: int, iface: str = "lo", netns: str | None = None, subdir: str = ""):
        (self.out / subdir).mkdir(parents=True, exist_ok=True)
        pcap = self.out / subdir / f"{self.name}.pcap"
        flt = " or ".join(f"tcp port {p}" for p in ports)
        errf = self.tmp / "tcpdump.err"
        pre = ["ip", "netns", "exec", netns] if netns else []
        with open(errf, "wb") as err:
            td = subprocess.Popen([*pre, "tcpdump", "-i", iface, "-U", "--immediate-mode", "-n", "-s", "0", "-w", str(pcap), flt],
                                  stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.time() + 5
        while b"listening on" not in errf.read_bytes():
            if td.poll() is not None or time.time() > deadline:
                raise RuntimeError("tcpdump did not start: " + errf.read_text())
            time.sleep(0.05)
        time.sleep(0.2)
        try:
            yield pcap
        finally:
            time.sleep(0.4)  # let the last FIN/ACKs through
            td.send_signal(signal.SIGINT)
            try:
                td.wait(5)
            except subprocess.TimeoutExpired:
                td.kill()

    def stop(self) -> None:
        for _label, p in reversed(self.procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(3)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGKILL)
                    p.wait(2)
        self.procs.clear()


# ======================================================================= raw clients

def mask_frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    """A client (masked) WebSocket frame, RFC 6455 5.2."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    key = os.urandom(4)
    return hdr + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def parse_frames(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    frames = []
    while len(buf) >= 2:
        op, ln = buf[0] & 0x0F, buf[1] & 0x7F
        i = 2
        if ln == 126:
            if len(buf) < 4:
                break
            ln, i = struct.unpack("!H", buf[2:4])[0], 4
        elif ln == 127:
            if len(buf) < 10:
                break
            ln, i = struct.unpack("!Q", buf[2:10])[0], 10
        masked = buf[1] & 0x80
        if masked:
            i += 4
        if len(buf) < i + ln:
            break
        frames.append((op, buf[i:i + ln]))
        buf = buf[i + ln:]
    return frames, buf


def esp32_request(host_hdr: str, path: str, headers: list[tuple[str, str]]) -> bytes:
    """Request layout of the ESP32 firmware's WebSocket client (spec 3.4): request line,
    Host without port, then all other headers byte-wise sorted (std::map), no User-Agent."""
    lines = [f"GET {path} HTTP/1.1", f"Host: {host_hdr}"]
    lines += [f"{k}: {v}" for k, v in sorted(headers, key=lambda kv: kv[0])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def ws_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def esp32_headers(device: str | None = DEV, client: str | None = CID, token: str | None = None,
                  *, auth_value: str | None = None, upgrade: str | None = "websocket",
                  connection: str | None = "Upgrade", version: str | None = "13",
                  key: str | None = None, extra: list[tuple[str, str]] | None = None
                  ) -> list[tuple[str, str]]:
    h: list[tuple[str, str]] = []
    if auth_value is not None:
        h.append(("Authorization", auth_value))
    elif token:
        h.append(("Authorization", f"Bearer {token}"))
    if client is not None:
        h.append(("Client-Id", client))
    if connection is not None:
        h.append(("Connection", connection))
    if device is not None:
        h.append(("Device-Id", device))
    h.append(("Protocol-Version", "1"))
    h.append(("Sec-WebSocket-Key", key if key is not None else ws_key()))
    if version is not None:
        h.append(("Sec-WebSocket-Version", version))
    if upgrade is not None:
        h.append(("Upgrade", upgrade))
    h += extra or []
    return h


def raw_exchange(host: str, port: int, data: bytes | list[bytes], *, ws_hello: str | None = FIRMWARE_HELLO,
                 wait: float = 2.0, gap: float = 0.05, tls: bool = False,
                 ssl_ctx: ssl.SSLContext | None = None) -> dict:
    """Connect, send ``data`` (one write, or several writes with TCP_NODELAY and small
    gaps), read the response.  On a 101 behave like the ESP32 client (spec 3.5): send
    the hello as a masked text frame, wait for the server hello or a Close, and on a
    Close just drop the socket without answering it."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    res: dict = {"connected": False, "status": None, "frames": [], "error": None}
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(3)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        s.connect((host, port))
        res["connected"] = True
        if tls or ssl_ctx is not None:
            ctx = ssl_ctx or ssl.create_default_context()
            if ssl_ctx is None:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname="localhost")
        chunks = data if isinstance(data, list) else [data]
        for i, c in enumerate(chunks):
            if i:
                time.sleep(gap)
            s.sendall(c)
        buf = b""
        deadline = time.time() + wait
        while b"\r\n\r\n" not in buf and time.time() < deadline:
            s.settimeout(max(0.05, deadline - time.time()))
            try:
                d = s.recv(65536)
            except TimeoutError:
                break
            if not d:
                break
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        res["head"] = head.decode("latin-1")
        if head.startswith(b"HTTP/"):
            res["status"] = int(head.split()[1])
        if res["status"] == 101:
            if ws_hello is not None:
                s.sendall(mask_frame(0x1, ws_hello.encode()))
            deadline = time.time() + wait
            got_hello = False
            while time.time() < deadline:
                frames, rest = parse_frames(rest)
                for op, pl in frames:
                    res["frames"].append((op, pl))
                    if op == 0x1 and pl.startswith(b'{"type": "hello"'):
                        got_hello = True
                        deadline = min(deadline, time.time() + 0.3)  # the MCP request follows
                if any(op == 0x8 for op, _ in res["frames"]):
                    break
                s.settimeout(max(0.05, deadline - time.time()))
                try:
                    d = s.recv(65536)
                except TimeoutError:
                    if got_hello:
                        break
                    continue
                if not d:
                    break
                rest += d
        elif head:
            # read the body until Content-Length is satisfied, the server closes, or timeout
            clen = None
            for line in res["head"].split("\r\n")[1:]:
                k, _, v = line.partition(":")
                if k.strip().lower() == "content-length" and v.strip().isdigit():
                    clen = int(v.strip())
            deadline = time.time() + wait
            while time.time() < deadline and (clen is None or len(rest) < clen):
                s.settimeout(max(0.05, deadline - time.time()))
                try:
                    d = s.recv(65536)
                except TimeoutError:
                    break
                if not d:
                    break
                rest += d
            res["body"] = rest.decode("utf-8", "replace")
            time.sleep(0.1)
    except OSError as e:
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        with contextlib.suppress(OSError):
            s.close()  # the ESP32 destroys the socket without a Close frame (spec 3.5)
    return res


def esp32_ota(host: str, port: int, path: str = "/xiaozhi/ota/", device: str = DEV,
              client: str | None = CID, host_hdr: str | None = None) -> dict:
    """The firmware's OTA request (spec 3.2): POST, Host (with port), then headers sorted
    by lower-cased name, JSON body.  Returns the parsed response."""
    body = json.dumps({
        "version": 2, "language": "zh-CN", "flash_size": 16777216,
        "minimum_free_heap_size": "7265024", "mac_address": device, "uuid": client,
        "chip_model_name": "esp32s3",
        "application": {"name": "xiaozhi", "version": "2.4.2", "compile_time": "Aug  8 2026T10:00:00Z",
                        "idf_version": "v5.5.1", "elf_sha256": "0" * 64},
        "ota": {"label": "ota_0"}, "board": {"type": "bread-compact-wifi", "name": "bread-compact-wifi",
                                                "ssid": "wsdiag-lab", "rssi": -48, "channel": 6,
                                                "ip": "192.168.1.77", "mac": device},
    }, separators=(",", ":")).encode()
    hdrs = [("Activation-Version", "1"), ("Device-Id", device), ("User-Agent", "bread-compact-wifi/2.4.2"),
            ("Accept-Language", "zh-CN"), ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))), ("Connection", "close")]
    if client is not None:
        hdrs.append(("Client-Id", client))
    hdrs.sort(key=lambda kv: kv[0].lower())
    hh = host_hdr or (f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    req = (f"POST {path} HTTP/1.1\r\nHost: {hh}\r\n" +
           "".join(f"{k}: {v}\r\n" for k, v in hdrs) + "\r\n").encode() + body
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    out: dict = {"status": None, "json": None, "body": ""}
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect((host, port))
        s.sendall(req)
        buf = b""
        with contextlib.suppress(TimeoutError, socket.timeout):
            while True:
                d = s.recv(65536)
                if not d:
                    break
                buf += d
    head, _, body_b = buf.partition(b"\r\n\r\n")
    if head:
        out["status"] = int(head.split()[1])
    out["body"] = body_b.decode("utf-8", "replace")
    with contextlib.suppress(ValueError):
        out["json"] = json.loads(out["body"])
    return out


# ==================================================================== websockets clients

def ws_client(uri: str, *, first: str | None = None, wait: float = 1.5, **kw) -> dict:
    """Run the real `websockets` asyncio client; record what happened."""
    from websockets.asyncio.client import connect

    res: dict = {"error": None, "received": [], "close": None}

    async def go() -> None:
        try:
            async with connect(uri, open_timeout=3, close_timeout=2, **kw) as ws:
                res["response_status"] = ws.response.status_code
                res["subprotocol"] = ws.subprotocol
                if first is not None:
                    await ws.send(first)
                with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                    async with asyncio.timeout(wait):
                        async for m in ws:
                            res["received"].append(m)
                res["close"] = (ws.close_code, ws.close_reason)
        except Exception as e:
            res["error"] = f"{type(e).__name__}: {e}"

    asyncio.run(go())
    return res


def insecure_ctx() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# ========================================================================== scenarios

@dataclass
class Stream:
    client: str
    server: str
    cause: str


@dataclass
class Scenario:
    name: str
    software: str
    shows: str
    streams: list[Stream]
    run: Callable[[Ctx], dict]
    tags: list[str] = field(default_factory=list)


SCENARIOS: list[Scenario] = []

ESP = "esp32-fw-sim"  # raw-socket re-creation of the firmware's request bytes (spec 3.4)
XZ = "xiaozhi-like(websockets)"
NGINX = "nginx"


def scenario(name: str, software: str, shows: str, streams: list[tuple[str, str, str]]):
    def deco(fn: Callable[[Ctx], dict]) -> Callable[[Ctx], dict]:
        SCENARIOS.append(Scenario(name, software, shows, [Stream(*s) for s in streams], fn))
        return fn
    return deco


def _esp_ws(ctx: Ctx, port: int, *, host: str = "127.0.0.1", host_hdr: str | None = None,
            path: str = PATH, headers: list[tuple[str, str]] | None = None, **kw) -> dict:
    hh = host_hdr or host
    with ctx.capture(port):
        return raw_exchange(host, port, esp32_request(hh, path, headers or esp32_headers()), **kw)


# ---------------------------------------------------------------- xiaozhi-like (scenario 8)

@scenario("xiaozhi-good-handshake", "esp32-fw-sim -> xiaozhi-like",
          "ESP32 firmware request (valid HMAC token, auth on) -> 101, firmware hello (masked), "
          "server hello + MCP initialize; client drops the socket without a Close (like the ESP32)",
          [(ESP, XZ, "none")])
def sc_good(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    return _esp_ws(ctx, p, headers=esp32_headers(token=make_token(CID, DEV)))


@scenario("xiaozhi-good-handshake-ipv6", "esp32-fw-sim -> xiaozhi-like on [::1]",
          "same good handshake over IPv6 loopback", [(ESP, XZ, "none")])
def sc_good6(ctx: Ctx) -> dict:
    p = ctx.port(8000, v6=True)
    ctx.xiaozhi(p, auth=True, host="::1")
    return _esp_ws(ctx, p, host="::1", host_hdr="[::1]", headers=esp32_headers(token=make_token(CID, DEV)))


@scenario("xiaozhi-auth-failed-no-token", "esp32-fw-sim -> xiaozhi-like (auth on)",
          "no Authorization header -> 101, text 认证失败, Close 1000 (crosses the client hello)",
          [(ESP, XZ, "missing-token")])
def sc_no_token(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    return _esp_ws(ctx, p, headers=esp32_headers(token=None))


@scenario("xiaozhi-auth-failed-lowercase-bearer", "esp32-fw-sim -> xiaozhi-like (auth on)",
          "`Authorization: bearer VALID_TOKEN` (lower-case scheme) -> 101, 认证失败, Close 1000",
          [(ESP, XZ, "malformed-authorization")])
def sc_lower_bearer(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    return _esp_ws(ctx, p, headers=esp32_headers(auth_value=f"bearer {make_token(CID, DEV)}"))


@scenario("xiaozhi-auth-failed-expired-token", "esp32-fw-sim -> xiaozhi-like (auth on)",
          "well-formed token whose timestamp is 40 days old -> 101, 认证失败, Close 1000",
          [(ESP, XZ, "token-expired")])
def sc_expired(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    tok = make_token(CID, DEV, ts=int(time.time()) - 40 * 86400)
    return _esp_ws(ctx, p, headers=esp32_headers(token=tok))


@scenario("xiaozhi-auth-failed-token-other-device", "esp32-fw-sim -> xiaozhi-like (auth on)",
          f"fresh token signed for Device-Id {DEV_OTHER}, sent with Device-Id {DEV} -> 认证失败",
          [(ESP, XZ, "token-bound-to-other-device")])
def sc_other_dev(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    return _esp_ws(ctx, p, headers=esp32_headers(token=make_token(CID, DEV_OTHER)))


@scenario("xiaozhi-auth-failed-missing-client-id", "esp32-fw-sim -> xiaozhi-like (auth on)",
          "token signed with the real Client-Id, request without Client-Id (server signs 'None') "
          "-> 认证失败", [(ESP, XZ, "missing-client-id")])
def sc_no_cid(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    return _esp_ws(ctx, p, headers=esp32_headers(client=None, token=make_token(CID, DEV)))


@scenario("xiaozhi-auth-failed-test-token", "websockets client (py-xiaozhi style) -> xiaozhi-like (auth on)",
          "Python websockets client sending 'Authorization: Bearer test-token' (py-xiaozhi default "
          "when OTA gave no token) -> 101, 认证失败, Close 1000, client answers the Close",
          [("websockets-client", XZ, "token-rejected")])
def sc_test_token(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    with ctx.capture(p):
        return ws_client(f"ws://127.0.0.1:{p}{PATH}", compression=None,
                         additional_headers={"Authorization": "Bearer test-token", "Protocol-Version": "1",
                                             "Device-Id": DEV, "Client-Id": CID},
                         first=FIRMWARE_HELLO.replace(',"glyph_push":false', ""))


@scenario("xiaozhi-missing-device-id", "esp32-fw-sim -> xiaozhi-like (auth off)",
          "no Device-Id header, no query -> 101, text 端口正常，如需测试连接，请启动digital-human测试, Close 1000",
          [(ESP, XZ, "missing-device-id")])
def sc_no_dev(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p)
    return _esp_ws(ctx, p, headers=esp32_headers(device=None))


@scenario("xiaozhi-duplicate-device-id-1011", "esp32-fw-sim -> xiaozhi-like (auth on)",
          "Device-Id header sent twice -> 101, then Close 1011 with no text frame "
          "(dict(headers) raises MultipleValuesError in the handler)",
          [(ESP, XZ, "duplicate-header")])
def sc_dup(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    return _esp_ws(ctx, p, headers=esp32_headers(token=make_token(CID, DEV),
                                                 extra=[("Device-Id", DEV_OTHER)]))


@scenario("xiaozhi-duplicate-connection-500", "esp32-fw-sim -> xiaozhi-like",
          "Connection header sent twice -> Headers.get raises in the process_request hook -> library's "
          "500 'Failed to open a WebSocket connection.\\nSee server log for more information.'",
          [(ESP, XZ, "duplicate-header")])
def sc_dup_conn(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    return _esp_ws(ctx, p, headers=esp32_headers(token=make_token(CID, DEV), extra=[("Connection", "Upgrade")]))


@scenario("xiaozhi-connection-keepalive-upgrade-200", "esp32-fw-sim -> xiaozhi-like",
          "Connection: keep-alive, Upgrade (Firefox style) -> HTTP 200 'Server is running' from the "
          "process_request hook", [(ESP, XZ, "connection-token-list")])
def sc_conn_list(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    return _esp_ws(ctx, p, headers=esp32_headers(token=make_token(CID, DEV), connection="keep-alive, Upgrade"))


@scenario("xiaozhi-plain-get-server-is-running", "curl-like raw GET -> xiaozhi-like",
          "a plain HTTP GET (no Upgrade/Connection headers, e.g. a browser or curl opening the ws URL) "
          "-> HTTP 200 'Server is running'", [("raw-http-get", XZ, "server-is-running-page")])
def sc_plain_get(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p)
    req = (f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nUser-Agent: curl/7.88.1\r\n"
           "Accept: */*\r\n\r\n").encode()
    with ctx.capture(p):
        return raw_exchange("127.0.0.1", p, req)


@scenario("xiaozhi-split-request-good", "esp32-fw-sim -> xiaozhi-like (auth on)",
          "good request written in 4 TCP segments (TCP_NODELAY, 50 ms gaps) -> 101 + hello exchange",
          [(ESP, XZ, "none")])
def sc_split(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    req = esp32_request("127.0.0.1", PATH, esp32_headers(token=make_token(CID, DEV)))
    cuts = [0, 40, 130, 250, len(req)]
    with ctx.capture(p):
        return raw_exchange("127.0.0.1", p, [req[a:b] for a, b in itertools.pairwise(cuts)])


@scenario("xiaozhi-missing-upgrade-426", "esp32-fw-sim -> xiaozhi-like (websockets library)",
          "Connection: Upgrade but no Upgrade header -> library's 426 'missing Upgrade header'",
          [(ESP, XZ, "missing-upgrade-headers")])
def sc_426(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p)
    return _esp_ws(ctx, p, headers=esp32_headers(upgrade=None))


@scenario("xiaozhi-bad-websocket-key-400", "esp32-fw-sim -> xiaozhi-like (websockets library)",
          "Sec-WebSocket-Key that is not base64 of 16 bytes -> library's 400",
          [(ESP, XZ, "bad-websocket-key")])
def sc_badkey(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p)
    return _esp_ws(ctx, p, headers=esp32_headers(key="dGhlIHNhbXBsZQ=="))


@scenario("xiaozhi-websocket-version-8-400", "esp32-fw-sim -> xiaozhi-like (websockets library)",
          "Sec-WebSocket-Version: 8 -> library's 400 (not 426)", [(ESP, XZ, "bad-websocket-version")])
def sc_v8(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p)
    return _esp_ws(ctx, p, headers=esp32_headers(version="8"))


@scenario("xiaozhi-http10-request", "raw client -> xiaozhi-like (websockets 17.4)",
          "upgrade request with HTTP/1.0 in the request line -> websockets 17.4 answers 505 "
          "(websockets 14.2, pinned by xiaozhi, closes without any response)",
          [(ESP, XZ, "http10-request")])
def sc_http10(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p)
    req = esp32_request("127.0.0.1", PATH, esp32_headers()).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    with ctx.capture(p):
        return raw_exchange("127.0.0.1", p, req)


@scenario("xiaozhi-missing-host", "raw client -> xiaozhi-like (websockets 17.4)",
          "firmware-like upgrade request without a Host header: websockets 17.4 does not check Host, "
          "so 101 + hello exchange (a missing Host is not a failure for this server)",
          [(ESP, XZ, "none")])
def sc_nohost(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p)
    req = esp32_request("127.0.0.1", PATH, esp32_headers()).replace(b"Host: 127.0.0.1\r\n", b"")
    with ctx.capture(p):
        return raw_exchange("127.0.0.1", p, req)


@scenario("xiaozhi-browser-deflate-auth-failed", "websockets client (browser-like) -> xiaozhi-like (auth on)",
          "browser-style client (Origin, browser User-Agent, identity in the query string, "
          "permessage-deflate offered) without authorization -> 101 with permessage-deflate; "
          "认证失败 frame compressed (RSV1)", [("websockets-client(browser-like)", XZ, "missing-token")])
def sc_deflate(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    uri = f"ws://127.0.0.1:{p}{PATH}?device-id=3C:71:BF:A4:09:5E&client-id=web_test_client"
    hello = json.dumps({"type": "hello", "device_id": "3C:71:BF:A4:09:5E", "device_name": "Web测试设备",
                        "device_mac": "3C:71:BF:A4:09:5E", "token": "",
                        "features": {"mcp": True}}, ensure_ascii=False)
    with ctx.capture(p):
        return ws_client(uri, compression="deflate", origin="http://127.0.0.1:8006",
                         user_agent_header="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                                           "(KHTML, like Gecko) Chrome/139.0.0.0 Safari/537.36",
                         first=hello)


@scenario("xiaozhi-query-identity-good", "websockets client (browser-like) -> xiaozhi-like (auth on)",
          "digital-human test page style: identity and token in the query string "
          "(?authorization=Bearer+<token>&device-id=...&client-id=...), permessage-deflate -> 101, "
          "hello answered (compressed frames)", [("websockets-client(browser-like)", XZ, "none")])
def sc_query_good(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    dev, cid = "3C:71:BF:A4:09:5E", "web_test_client"
    uri = (f"ws://127.0.0.1:{p}{PATH}?authorization=Bearer+{make_token(cid, dev)}"
           f"&device-id={dev}&client-id={cid}")
    with ctx.capture(p):
        return ws_client(uri, compression="deflate", origin="http://127.0.0.1:8006", wait=0.5,
                         user_agent_header="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
                                           "(KHTML, like Gecko) Chrome/139.0.0.0 Safari/537.36",
                         first=json.dumps({"type": "hello", "device_id": dev, "device_name": "Web测试设备",
                                           "device_mac": dev, "token": "", "features": {"mcp": True}},
                                          ensure_ascii=False))


# --------------------------------------------------------------- OTA (scenarios 2 and 8)

def _ota_then_ws(ctx: Ctx, ws_device: str) -> dict:
    wp, op = ctx.port(8000), ctx.port(8003)
    ctx.xiaozhi(wp, auth=True)
    ctx.aux("ota", op, "--ws-url", f"ws://127.0.0.1:{wp}{PATH}", "--auth", "--auth-key", AUTH_KEY)
    with ctx.capture(op, wp):
        ota = esp32_ota("127.0.0.1", op)
        ws = ota["json"]["websocket"]
        assert ws["url"].startswith("ws://127.0.0.1:"), ws
        time.sleep(0.2)
        r = raw_exchange("127.0.0.1", wp, esp32_request("127.0.0.1", PATH,
                                                         esp32_headers(device=ws_device, token=ws["token"])))
    r["ota"] = ota
    return r


@scenario("ota-then-ws-good", "esp32-fw-sim -> aiohttp OTA + xiaozhi-like (auth on)",
          "POST /xiaozhi/ota/ (200, websocket.url + HMAC token) then the WebSocket with the same "
          "Device-Id/Client-Id and that token -> 101 + hello exchange",
          [(ESP, "aiohttp-ota", "none"), (ESP, XZ, "none")])
def sc_ota_good(ctx: Ctx) -> dict:
    return _ota_then_ws(ctx, DEV)


@scenario("ota-then-ws-device-id-mismatch", "esp32-fw-sim -> aiohttp OTA + xiaozhi-like (auth on)",
          f"OTA with Device-Id {DEV}; the WebSocket then uses the OTA token with Device-Id "
          f"{DEV.upper()} (case changed) -> 101, 认证失败, Close 1000",
          [(ESP, "aiohttp-ota", "none"), (ESP, XZ, "token-bound-to-other-device")])
def sc_ota_mismatch(ctx: Ctx) -> dict:
    return _ota_then_ws(ctx, DEV.upper())


def _ota_only(ctx: Ctx, url: str, path: str = "/xiaozhi/ota/") -> dict:
    op = ctx.port(8003)
    ctx.aux("ota", op, "--ws-url", url, "--auth", "--auth-key", AUTH_KEY)
    with ctx.capture(op):
        return esp32_ota("127.0.0.1", op, path=path)


@scenario("ota-placeholder-ws-url", "esp32-fw-sim -> aiohttp OTA",
          "OTA answers websocket.url = ws://xiaozhi.server.com:8000/xiaozhi/v1/ (manager-api default "
          "when server.websocket is unset); no WebSocket attempt recorded (the device would try to "
          "resolve xiaozhi.server.com)", [(ESP, "aiohttp-ota", "ota-url-unreachable")])
def sc_ota_placeholder(ctx: Ctx) -> dict:
    return _ota_only(ctx, "ws://xiaozhi.server.com:8000/xiaozhi/v1/")


@scenario("ota-container-ws-url", "esp32-fw-sim -> aiohttp OTA",
          "OTA (reached on 127.0.0.1) answers websocket.url = ws://172.17.0.2:8000/xiaozhi/v1/ "
          "(Docker-internal address); no connection to 172.17.0.2 was made",
          [(ESP, "aiohttp-ota", "ota-url-mismatch")])
def sc_ota_container(ctx: Ctx) -> dict:
    return _ota_only(ctx, "ws://172.17.0.2:8000/xiaozhi/v1/")


@scenario("ota-no-trailing-slash-404", "esp32-fw-sim -> aiohttp OTA",
          "POST /xiaozhi/ota (no trailing slash) -> aiohttp's own 404 '404: Not Found'",
          [(ESP, "aiohttp-ota", "wrong-path")])
def sc_ota_404(ctx: Ctx) -> dict:
    return _ota_only(ctx, "ws://127.0.0.1:8000/xiaozhi/v1/", path="/xiaozhi/ota")


@scenario("ota-missing-client-id", "esp32-fw-sim -> aiohttp OTA",
          "OTA POST without Client-Id -> single-module style HTTP 200 "
          '{"success": false, "message": "request error."}', [(ESP, "aiohttp-ota", "missing-client-id")])
def sc_ota_nocid(ctx: Ctx) -> dict:
    op = ctx.port(8003)
    ctx.aux("ota", op, "--ws-url", "ws://127.0.0.1:8000/xiaozhi/v1/")
    with ctx.capture(op):
        return esp32_ota("127.0.0.1", op, client=None)


# ------------------------------------------------------------------- wrong service (9)

@scenario("manager-api-wrong-service-200-json", "esp32-fw-sim -> aiohttp (manager-api-like)",
          'WebSocket upgrade sent to a manager-api-like HTTP service -> HTTP 200 JSON '
          '{"code": 401, "msg": ...} instead of 101', [(ESP, "aiohttp(manager-api-like)", "wrong-service")])
def sc_wrong_service(ctx: Ctx) -> dict:
    p = ctx.port(8002)
    ctx.aux("wrong-service", p)
    return _esp_ws(ctx, p, path="/xiaozhi/v1/", headers=esp32_headers(token=make_token(CID, DEV)))


# -------------------------------------------------------------------- Starlette (3)

def _uvicorn(ctx: Ctx, port: int) -> None:
    ctx.start("uvicorn", [PY, "-m", "uvicorn", "servers:starlette_app", "--host", "127.0.0.1",
                          "--port", str(port), "--log-level", "info"], port)


@scenario("starlette-wrong-path-403", "esp32-fw-sim -> uvicorn + Starlette",
          "xiaozhi path /xiaozhi/v1/ sent to a Starlette app whose only WebSocket route is /ws "
          "-> uvicorn answers 403", [(ESP, "uvicorn+starlette", "wrong-path")])
def sc_starlette_path(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    _uvicorn(ctx, p)
    return _esp_ws(ctx, p, headers=esp32_headers(token=make_token(CID, DEV)))


@scenario("starlette-close-before-accept-403", "esp32-fw-sim -> uvicorn + Starlette",
          "route exists but the app closes before accept() -> uvicorn answers 403; on the wire the "
          "same bare 403 as a missing route, so without --expect-path the likelier cause is named",
          [(ESP, "uvicorn+starlette", "wrong-path")])
def sc_starlette_close(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    _uvicorn(ctx, p)
    return _esp_ws(ctx, p, path="/ws-closed", headers=esp32_headers(token=make_token(CID, DEV)))


@scenario("socketio-plain-websocket-403", "websockets client -> uvicorn + python-socketio",
          "a plain WebSocket client opens ws://…/socket.io/ on a Socket.IO server (no EIO= query, "
          "no Engine.IO framing) -> uvicorn answers 403", [("websockets-client", "uvicorn+python-socketio",
                                                            "wrong-service")])
def sc_socketio_plain(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.start("uvicorn", [PY, "-m", "uvicorn", "servers:make_socketio_app", "--factory", "--host",
                          "127.0.0.1", "--port", str(p), "--log-level", "warning"], p)
    with ctx.capture(p):
        return ws_client(f"ws://127.0.0.1:{p}/socket.io/", compression=None, wait=0.5)


@scenario("starlette-good-ws", "websockets client -> uvicorn + Starlette",
          "correct path /ws -> 101 and an echoed text message", [("websockets-client", "uvicorn+starlette", "none")])
def sc_starlette_good(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    _uvicorn(ctx, p)
    with ctx.capture(p):
        return ws_client(f"ws://127.0.0.1:{p}/ws", compression=None, first="ping from wsdiag", wait=0.5)


# ------------------------------------------------------------------ websockets options (4)

@scenario("websockets-origin-rejected-403", "websockets client -> websockets serve(origins=[...])",
          "Origin http://evil.example not in origins=['http://allowed.example'] -> library's 403",
          [("websockets-client", "websockets-server", "origin-rejected")])
def sc_origin(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.aux("ws-origins", p, "--origin", "http://allowed.example")
    with ctx.capture(p):
        return ws_client(f"ws://127.0.0.1:{p}/", origin="http://evil.example", compression=None)


@scenario("websockets-subprotocol-mismatch", "websockets client -> websockets serve(subprotocols=['chat'])",
          "client offers Sec-WebSocket-Protocol: superchat, server supports only chat -> library's 400 "
          "'invalid subprotocol; expected one of chat.'", [("websockets-client", "websockets-server", "subprotocol-mismatch")])
def sc_subproto(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.aux("ws-subproto", p)
    with ctx.capture(p):
        return ws_client(f"ws://127.0.0.1:{p}/", subprotocols=["superchat"], compression=None)


# ------------------------------------------------------------------------ nginx (5)

@scenario("nginx-deny-403", "esp32-fw-sim -> nginx (deny all)",
          "nginx 'deny all;' in the WebSocket location -> nginx's 403 Forbidden page, backend never contacted",
          [(ESP, NGINX, "proxy-rejected")])
def sc_nginx_deny(ctx: Ctx) -> dict:
    np_, bp = ctx.port(8080), ctx.port(8000)
    ctx.xiaozhi(bp, auth=True)
    ctx.nginx("deny.conf", np_, f"127.0.0.1:{bp}")
    with ctx.capture(np_, bp):
        return raw_exchange("127.0.0.1", np_, esp32_request("127.0.0.1", PATH, esp32_headers(
            token=make_token(CID, DEV))))


def _nginx_proxy(ctx: Ctx, conf: str, headers: list[tuple[str, str]], path: str = PATH,
                 backend_alive: bool = True) -> dict:
    np_, bp = ctx.port(8080), ctx.port(8000)
    if backend_alive:
        ctx.xiaozhi(bp, auth=True)
    ctx.nginx(conf, np_, f"127.0.0.1:{bp}")
    with ctx.capture(np_, bp):
        return raw_exchange("127.0.0.1", np_, esp32_request("127.0.0.1", path, headers))


@scenario("nginx-no-upgrade-forwarding-200", "esp32-fw-sim -> nginx -> xiaozhi-like",
          "nginx with proxy_http_version 1.1 but without proxy_set_header Upgrade/Connection: backend "
          "gets Connection: close and no Upgrade, answers 200 'Server is running', nginx relays it",
          [(ESP, NGINX, "missing-upgrade-headers"), ("nginx", XZ, "missing-upgrade-headers")])
def sc_nginx_noup(ctx: Ctx) -> dict:
    return _nginx_proxy(ctx, "proxy-no-upgrade.conf", esp32_headers(token=make_token(CID, DEV)))


@scenario("nginx-http10-upstream", "esp32-fw-sim -> nginx -> xiaozhi-like",
          "bare proxy_pass: nginx sends 'GET ... HTTP/1.0' + 'Connection: close' upstream, no Upgrade; "
          "the xiaozhi hook answers 200 'Server is running' (websockets 17.4 parses HTTP/1.0), nginx "
          "relays it; with websockets 14.2 the backend would drop the request and nginx would send 502",
          [(ESP, NGINX, "missing-upgrade-headers"), ("nginx", XZ, "missing-upgrade-headers")])
def sc_nginx_http10(ctx: Ctx) -> dict:
    return _nginx_proxy(ctx, "proxy-http10.conf", esp32_headers(token=make_token(CID, DEV)))


@scenario("nginx-upgrade-good", "esp32-fw-sim -> nginx -> xiaozhi-like",
          "documented WebSocket proxy config -> 101 relayed, hello exchange through nginx",
          [(ESP, NGINX, "none"), ("nginx", XZ, "none")])
def sc_nginx_good(ctx: Ctx) -> dict:
    return _nginx_proxy(ctx, "proxy-upgrade.conf", esp32_headers(token=make_token(CID, DEV)))


@scenario("nginx-underscore-device-id", "esp32-fw-sim -> nginx -> xiaozhi-like (auth off)",
          "client sends Device_Id: (underscore); nginx (underscores_in_headers off) drops it; "
          "backend answers 101 + 端口正常… + Close 1000",
          [(ESP, NGINX, "underscore-header"), ("nginx", XZ, "missing-device-id")])
def sc_nginx_underscore(ctx: Ctx) -> dict:
    np_, bp = ctx.port(8080), ctx.port(8000)
    ctx.xiaozhi(bp)
    ctx.nginx("proxy-upgrade.conf", np_, f"127.0.0.1:{bp}")
    h = [kv for kv in esp32_headers() if kv[0] != "Device-Id"] + [("Device_Id", DEV)]
    with ctx.capture(np_, bp):
        return raw_exchange("127.0.0.1", np_, esp32_request("127.0.0.1", PATH, h))


@scenario("nginx-idle-timeout-60s", "websockets client (no pings) -> nginx -> websockets echo (no pings)",
          "documented proxy config (proxy_read_timeout 60s); one message each way, then silence: nginx "
          "closes both legs 60 s after the backend last sent anything (the client sees 1006)",
          [("websockets", NGINX, "none"), ("nginx", "websockets(echo)", "none")])
def sc_nginx_idle(ctx: Ctx) -> dict:
    np_, bp = ctx.port(8080), ctx.port(8000)
    ctx.aux("ws-quiet", bp)
    ctx.nginx("proxy-upgrade.conf", np_, f"127.0.0.1:{bp}")
    with ctx.capture(np_, bp):
        return ws_client(f"ws://127.0.0.1:{np_}{PATH}", first="hello", wait=70, ping_interval=None)


@scenario("nginx-redirect-301-no-slash", "esp32-fw-sim -> nginx",
          "request for /xiaozhi/v1 (no trailing slash) to a 'location /xiaozhi/v1/ { proxy_pass ... }' "
          "-> nginx's automatic 301 to /xiaozhi/v1/ (WebSocket clients do not follow it)",
          [(ESP, NGINX, "redirect")])
def sc_nginx_redirect(ctx: Ctx) -> dict:
    return _nginx_proxy(ctx, "proxy-upgrade.conf", esp32_headers(token=make_token(CID, DEV)),
                        path="/xiaozhi/v1")


@scenario("nginx-plain-http-to-https-port-400", "esp32-fw-sim -> nginx (ssl listener)",
          "plain ws:// request to nginx's TLS port -> 400 'The plain HTTP request was sent to HTTPS port'",
          [(ESP, NGINX, "plain-to-tls-port")])
def sc_nginx_plain_tls(ctx: Ctx) -> dict:
    np_, bp = ctx.port(8443), ctx.port(8000)
    ctx.nginx("tls.conf", np_, f"127.0.0.1:{bp}")
    with ctx.capture(np_):
        return raw_exchange("127.0.0.1", np_, esp32_request("127.0.0.1", PATH, esp32_headers(
            token=make_token(CID, DEV))))


@scenario("nginx-backend-down-502", "esp32-fw-sim -> nginx -> (nothing listening)",
          "correct proxy config but nothing listens on the backend port -> backend SYN answered by RST, "
          "nginx answers 502 Bad Gateway", [(ESP, NGINX, "proxy-rejected"), ("nginx", "(closed port)", "port-closed")])
def sc_nginx_502(ctx: Ctx) -> dict:
    return _nginx_proxy(ctx, "proxy-upgrade.conf", esp32_headers(token=make_token(CID, DEV)),
                        backend_alive=False)


# ------------------------------------------------------------------------ TLS mismatch (6)

@scenario("tls-clienthello-to-plain-ws-port", "websockets client (wss://) -> xiaozhi-like (plain ws)",
          "wss:// used against the plain ws port: TLS ClientHello arrives at the HTTP parser; "
          "websockets 17.4 closes (FIN) without sending anything", [("websockets-client(wss)", XZ, "tls-to-plain-port")])
def sc_tls_to_plain(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p)
    with ctx.capture(p):
        return ws_client(f"wss://127.0.0.1:{p}{PATH}", ssl=insecure_ctx(), compression=None,
                         additional_headers={"Device-Id": DEV, "Client-Id": CID})


@scenario("plain-http-to-python-tls-port", "esp32-fw-sim -> websockets serve(ssl=...)",
          "ws:// (plain HTTP upgrade) sent to a Python ssl/websockets wss server: closed (FIN) "
          "without any TLS alert or HTTP answer", [(ESP, "websockets-server(tls)", "plain-to-tls-port")])
def sc_plain_to_tls(ctx: Ctx) -> dict:
    p = ctx.port(8443)
    c, k = ctx.cert()
    ctx.aux("ws-tls", p, "--certfile", str(c), "--keyfile", str(k))
    return _esp_ws(ctx, p, headers=esp32_headers(token=make_token(CID, DEV)))


@scenario("tls-good-wss-python", "websockets client (wss://) -> websockets serve(ssl=...)",
          "correct wss:// to a TLS server: only the TLS handshake and encrypted records are visible",
          [("websockets-client(wss)", "websockets-server(tls)", "none")])
def sc_tls_good(ctx: Ctx) -> dict:
    p = ctx.port(8443)
    c, k = ctx.cert()
    ctx.aux("ws-tls", p, "--certfile", str(c), "--keyfile", str(k))
    with ctx.capture(p):
        return ws_client(f"wss://127.0.0.1:{p}/", ssl=insecure_ctx(), compression=None, first="hi", wait=0.5)


# ------------------------------------------- TLS with key logs, under captures/tls/ (issue 5)
# Certificates are made here with `cryptography`: a private CA and leaves signed by it. Clients
# write the TLS secrets with `SSLContext.keylog_filename` next to the pcap (<name>.keylog): they
# are throw-away test keys, kept so that `wsdiag analyze --keylog` can decrypt the capture.

def tls_pki(ctx: Ctx, *, expired: bool = False, key: str = "rsa") -> tuple[Path, Path, Path]:
    """(chain file = leaf + CA, leaf key, CA cert) for CN=localhost, signed by 'wsdiag test CA'."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    def new_key(kind: str):
        return ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)

    now = dt.datetime.now(dt.UTC)
    ca_key = new_key("rsa")
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "wsdiag test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
          .not_valid_after(now + dt.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf_key = new_key(key)
    start, end = (now - dt.timedelta(days=60), now - dt.timedelta(days=30)) if expired else (
        now - dt.timedelta(days=1), now + dt.timedelta(days=30))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    chain, keyf, caf = ctx.tmp / "chain.pem", ctx.tmp / "leaf.key", ctx.tmp / "ca.pem"
    chain.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    caf.write_bytes(ca.public_bytes(pem))
    keyf.write_bytes(leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return chain, keyf, caf


def keylog_ctx(ctx: Ctx, cafile: Path | None, tls12: bool = False) -> ssl.SSLContext:
    """A client context that verifies against `cafile` (None: the system bundle, which does not
    hold our test CA) and writes its secrets to captures/tls/<name>.keylog."""
    c = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if tls12:
        c.maximum_version = ssl.TLSVersion.TLSv1_2
    log = ctx.out / "tls" / f"{ctx.name}.keylog"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.unlink(missing_ok=True)
    c.keylog_filename = str(log)
    return c


@scenario("tls-wss-good-keylog", "websockets client (wss://, CA trusted, SSLKEYLOGFILE) -> websockets serve(ssl=...)",
          "good wss:// (TLS 1.3, RSA leaf + CA sent): with tls/tls-wss-good-keylog.keylog the 101 and the echo "
          "frames decrypt", [("websockets-client(wss)", "websockets-server(tls)", "none")])
def sc_tls_wss_good(ctx: Ctx) -> dict:
    p = ctx.port(8443)
    chain, key, ca = tls_pki(ctx)
    ctx.aux("ws-tls", p, "--certfile", str(chain), "--keyfile", str(key))
    with ctx.capture(p, subdir="tls"):
        return ws_client(f"wss://localhost:{p}/xiaozhi/v1/", ssl=keylog_ctx(ctx, ca), compression=None,
                         first="hi", wait=0.5, additional_headers={"Device-Id": DEV, "Client-Id": CID})


@scenario("tls-nginx-403-keylog", "esp32-fw-sim over TLS (SSLKEYLOGFILE) -> nginx (ssl listener, return 403)",
          "nginx TLS listener answering 'return 403' for the WebSocket path: decrypted with the key log it is "
          "the same 403 as on plain TCP", [(ESP, NGINX, "proxy-rejected")])
def sc_tls_nginx_403(ctx: Ctx) -> dict:
    np_ = ctx.port(8443)
    chain, key, ca = tls_pki(ctx)
    ntmp = ctx.tmp / "nginx"
    ntmp.mkdir(exist_ok=True)
    conf = (HERE / "nginx" / "tls-403.conf").read_text()
    conf = conf.replace("@PORT@", str(np_)).replace("@TMP@", str(ntmp)).replace("@CERT@", str(chain)).replace(
        "@KEY@", str(key))
    (ntmp / "tls-403.conf").write_text(conf)
    ctx.start("nginx", ["nginx", "-e", "stderr", "-p", str(ntmp), "-c", str(ntmp / "tls-403.conf")], np_)
    with ctx.capture(np_, subdir="tls"):
        return raw_exchange("127.0.0.1", np_, esp32_request("localhost", PATH, esp32_headers(
            token=make_token(CID, DEV))), ssl_ctx=keylog_ctx(ctx, ca))


def _tls_refused(ctx: Ctx, *, expired: bool = False, trust: bool = True, key: str = "rsa") -> dict:
    """A blocking-socket TLS 1.2 client (OpenSSL writes its alert to the socket; asyncio's ssl
    closes without flushing it) sending a plain RFC 6455 upgrade for / to the echo server."""
    p = ctx.port(8443)
    chain, keyf, ca = tls_pki(ctx, expired=expired, key=key)
    ctx.aux("ws-tls", p, "--certfile", str(chain), "--keyfile", str(keyf))
    req = (f"GET / HTTP/1.1\r\nHost: localhost:{p}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Key: {ws_key()}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
    with ctx.capture(p, subdir="tls"):
        return raw_exchange("127.0.0.1", p, req, ws_hello="hi", wait=1.0,
                            ssl_ctx=keylog_ctx(ctx, ca if trust else None, tls12=True))


@scenario("tls-untrusted-ca-tls12", "websockets client (TLS 1.2, system CA bundle) -> websockets serve(ssl=...)",
          "the client does not hold the server's private CA: after the Certificate it sends the alert "
          "unknown_ca (48) in plaintext", [("websockets-client(wss)", "websockets-server(tls)", "untrusted-certificate")])
def sc_tls_untrusted(ctx: Ctx) -> dict:
    return _tls_refused(ctx, trust=False)


@scenario("tls-expired-certificate-tls12", "websockets client (TLS 1.2, CA trusted) -> websockets serve(ssl=...)",
          "the server's certificate expired 30 days before the capture: the client sends certificate_expired (45)",
          [("websockets-client(wss)", "websockets-server(tls)", "certificate-expired")])
def sc_tls_expired(ctx: Ctx) -> dict:
    return _tls_refused(ctx, expired=True)


@scenario("tls-ecc-certificate-tls12", "websockets client (TLS 1.2, CA trusted, SSLKEYLOGFILE) -> websockets serve(ssl=...)",
          "good wss:// with an ECDSA P-256 leaf: Wi-Fi clients connect, ML307 4G modems cannot (warning)",
          [("websockets-client(wss)", "websockets-server(tls)", "none")])
def sc_tls_ecc(ctx: Ctx) -> dict:
    return _tls_refused(ctx, key="ec")


# ---------------------------------------------------------------------- transport (7)

@scenario("tcp-port-closed-rst", "esp32-fw-sim -> (nothing listening)",
          "SYN to a closed port on 127.0.0.1 answered by RST", [(ESP, "(closed port)", "port-closed")])
def sc_closed(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    return _esp_ws(ctx, p)


@scenario("tcp-no-answer", "esp32-fw-sim -> raw TCP server that never answers",
          "request sent and ACKed, no response for 2 s, client closes", [(ESP, "raw-silent", "no-answer")])
def sc_silent(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.aux("raw-silent", p)
    return _esp_ws(ctx, p, headers=esp32_headers(token=make_token(CID, DEV)))


@scenario("tcp-reset-after-request", "esp32-fw-sim -> raw TCP server (SO_LINGER 0)",
          "server reads the request and resets the connection (RST), no response",
          [(ESP, "raw-reset", "connection-reset")])
def sc_reset(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.aux("raw-reset", p)
    return _esp_ws(ctx, p, headers=esp32_headers(token=make_token(CID, DEV)))


@scenario("tcp-fin-without-answer", "esp32-fw-sim -> raw TCP server (close)",
          "server reads the request and closes (FIN) without any response bytes",
          [(ESP, "raw-fin", "no-answer")])
def sc_fin(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.aux("raw-fin", p)
    return _esp_ws(ctx, p, headers=esp32_headers(token=make_token(CID, DEV)))


# ------------------------------------------------------------ more cause names (10)

@scenario("nginx-missing-host-400", "esp32-fw-sim -> nginx (-> xiaozhi-like)",
          "firmware-like upgrade request without a Host header, sent to nginx (documented WebSocket "
          "proxy config) -> nginx's own 400 Bad Request page; the backend is never contacted",
          [(ESP, NGINX, "missing-host")])
def sc_nginx_nohost(ctx: Ctx) -> dict:
    np_, bp = ctx.port(8080), ctx.port(8000)
    ctx.xiaozhi(bp, auth=True)
    ctx.nginx("proxy-upgrade.conf", np_, f"127.0.0.1:{bp}")
    req = esp32_request("127.0.0.1", PATH, esp32_headers(token=make_token(CID, DEV))
                        ).replace(b"Host: 127.0.0.1\r\n", b"")
    with ctx.capture(np_, bp):
        return raw_exchange("127.0.0.1", np_, req)


@scenario("xiaozhi-auth-failed-server-key-changed", "esp32-fw-sim -> xiaozhi-like (auth on, random key)",
          "fresh, well-formed token for the request's own Device-Id/Client-Id, signed with wsdiag-test-key "
          "(the key it was issued with); the server runs with a random key (what app.py does when neither "
          "server.auth_key nor manager-api.secret is set: a new uuid4().hex at every restart) -> 101, "
          "认证失败, Close 1000", [(ESP, XZ, "auth-failed-after-upgrade")])
def sc_key_changed(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True, extra=["--auth-key", os.urandom(16).hex()])  # the last --auth-key wins
    return _esp_ws(ctx, p, headers=esp32_headers(token=make_token(CID, DEV)))


@scenario("xiaozhi-unbound-device-no-hello", "esp32-fw-sim -> xiaozhi-like (auth on, device not bound)",
          "valid token, device not bound in the manager-api (stand-in: --bind-code 123456) -> 101; the "
          "firmware hello is discarded; the server sends the stt bind prompt 请登录控制面板，输入123456，绑定设备 "
          "(+ llm and tts start frames) but never a hello; the client waits 2 s (the firmware: 10 s) and "
          "drops the socket", [(ESP, XZ, "no-server-hello")])
def sc_unbound(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True, extra=["--bind-code", "123456"])
    return _esp_ws(ctx, p, headers=esp32_headers(token=make_token(CID, DEV)), wait=2.0)


CID_HANDSET = "esp32-livingroom"  # a hand-set Client-Id that is not a UUID


@scenario("xiaozhi-non-uuid-client-id-good", "esp32-fw-sim -> xiaozhi-like (auth on)",
          f"good handshake whose Client-Id is {CID_HANDSET!r} (not a UUID; the token is signed for it) "
          "-> 101 + hello exchange: the server accepts any string (a warning, not a failure)",
          [(ESP, XZ, "none")])
def sc_odd_cid(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    return _esp_ws(ctx, p, headers=esp32_headers(client=CID_HANDSET, token=make_token(CID_HANDSET, DEV)))


@scenario("ota-manager-api-invalid-device-id", "esp32-fw-sim -> aiohttp (manager-api-like OTA)",
          "OTA POST with Device-Id a0b765123456 (MAC without separators) -> manager-api style HTTP 200 "
          '{"error":"Invalid device ID"}; no WebSocket attempt follows',
          [(ESP, "aiohttp(manager-api-like)", "malformed-device-id")])
def sc_ota_bad_dev(ctx: Ctx) -> dict:
    op = ctx.port(8002)
    ctx.aux("manager-ota", op, "--ws-url", "ws://127.0.0.1:8000/xiaozhi/v1/")
    with ctx.capture(op):
        return esp32_ota("127.0.0.1", op, device="a0b765123456")


# Two network namespaces joined by a veth pair (the layout of tests/netns.py, fixed names so
# that a crashed run is cleaned up by the next one).  Addresses exist only inside them.
NETNS_ESP, NETNS_SRV = "wsdiag-rec-esp32", "wsdiag-rec-server"
VETH_ESP, VETH_SRV = "wsdrec-esp32", "wsdrec-srv"
NETNS_ESP_IP, NETNS_SRV_IP = "10.99.77.2", "10.99.77.1"
ESP_MAC = "24:0a:c4:12:34:56"  # Espressif OUI 24:0A:C4
DEV_NOT_MAC = "a0:b7:65:99:88:77"


def _netns_down() -> None:
    for ns in (NETNS_ESP, NETNS_SRV):
        for pid in subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "link", "del", VETH_ESP], capture_output=True)  # if never moved


def _netns_up() -> None:
    _netns_down()
    cmds = [["netns", "add", NETNS_ESP], ["netns", "add", NETNS_SRV],
            ["link", "add", VETH_ESP, "type", "veth", "peer", "name", VETH_SRV],
            ["link", "set", VETH_ESP, "netns", NETNS_ESP], ["link", "set", VETH_SRV, "netns", NETNS_SRV],
            ["-n", NETNS_ESP, "link", "set", VETH_ESP, "address", ESP_MAC]]
    for ns, ifname, addr in ((NETNS_ESP, VETH_ESP, NETNS_ESP_IP), (NETNS_SRV, VETH_SRV, NETNS_SRV_IP)):
        cmds += [["-n", ns, "addr", "add", f"{addr}/24", "dev", ifname],
                 ["-n", ns, "link", "set", ifname, "up"], ["-n", ns, "link", "set", "lo", "up"]]
    for c in cmds:
        subprocess.run(["ip", *c], check=True, capture_output=True)


def _raw_exchange_in(netns: str, host: str, port: int, data: bytes, **kw) -> dict:
    """raw_exchange() run by a child python inside ``netns``."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import record; "
            "r = record.raw_exchange(sys.argv[2], int(sys.argv[3]), bytes.fromhex(sys.argv[4]), "
            "**json.loads(sys.argv[5])); r['frames'] = [[op, pl.hex()] for op, pl in r['frames']]; "
            "print(json.dumps(r))")
    out = subprocess.run(["ip", "netns", "exec", netns, PY, "-c", code, str(HERE), host, str(port),
                          data.hex(), json.dumps(kw)], capture_output=True, text=True, timeout=30, check=True)
    res = json.loads(out.stdout)
    res["frames"] = [(op, bytes.fromhex(pl)) for op, pl in res["frames"]]
    return res


@scenario("netns-device-id-not-link-mac", "esp32-fw-sim (netns, veth MAC 24:0a:c4:12:34:56) -> xiaozhi-like (netns)",
          f"two network namespaces joined by a veth pair, tcpdump on the server-side veth (real Ethernet "
          f"header); the client's frames come from the Espressif MAC {ESP_MAC} but it sends Device-Id "
          f"{DEV_NOT_MAC} (valid token for that id) -> 101 + hello exchange; the Device-Id is not the "
          "sender's MAC (a warning)", [(ESP, XZ, "none")])
def sc_netns_mac(ctx: Ctx) -> dict:
    _netns_up()
    try:
        p = 8000
        ctx.xiaozhi(p, auth=True, host=NETNS_SRV_IP, netns=NETNS_SRV)
        req = esp32_request(NETNS_SRV_IP, PATH, esp32_headers(device=DEV_NOT_MAC, token=make_token(CID, DEV_NOT_MAC)))
        with ctx.capture(p, iface=VETH_SRV, netns=NETNS_SRV):
            return _raw_exchange_in(NETNS_ESP, NETNS_SRV_IP, p, req)
    finally:
        ctx.stop()
        _netns_down()


@scenario("websockets-client-bad-accept", "websockets client -> raw TCP server (wrong Sec-WebSocket-Accept)",
          "server answers the upgrade with 101 and Sec-WebSocket-Accept = base64(SHA-1(key)) (the RFC 6455 "
          "GUID forgotten); the Python websockets client fails the handshake and closes the TCP "
          "connection without sending a frame", [("websockets-client", "raw-bad-accept", "bad-websocket-accept")])
def sc_bad_accept(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.aux("raw-bad-accept", p)
    with ctx.capture(p):
        return ws_client(f"ws://127.0.0.1:{p}/", compression=None)


@scenario("xiaozhi-post-405", "raw client -> xiaozhi-like (websockets 17.4)",
          "firmware-like upgrade request with method POST -> websockets 17.4 answers 405 "
          "(websockets 14.2, pinned by xiaozhi, closes without any response)",
          [(ESP, XZ, "malformed-request")])
def sc_post(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True)
    req = esp32_request("127.0.0.1", PATH, esp32_headers(token=make_token(CID, DEV))).replace(b"GET ", b"POST ", 1)
    with ctx.capture(p):
        return raw_exchange("127.0.0.1", p, req)


@scenario("xiaozhi-whitelist-case-miss", "esp32-fw-sim -> xiaozhi-like (auth on, upper-case allowed_devices)",
          f"server.auth.allowed_devices: ['{DEV.upper()}'] (upper case, the old config.yaml style); the device "
          "sends its lower-case MAC and no token -> the case-sensitive whitelist misses, 认证失败, Close 1000",
          [(ESP, XZ, "missing-token")])
def sc_wl_case(ctx: Ctx) -> dict:
    p = ctx.port(8000)
    ctx.xiaozhi(p, auth=True, extra=["--allowed-device", DEV.upper()])
    return _esp_ws(ctx, p, headers=esp32_headers(token=None))


# ============================================================================== main

def summarize(res: dict) -> str:
    if not isinstance(res, dict):
        return repr(res)[:300]
    out = []
    for k in ("error", "status", "response_status", "subprotocol", "close"):
        if res.get(k) is not None:
            out.append(f"{k}={res[k]}")
    if res.get("frames"):
        fr = []
        for op, pl in res["frames"]:
            if op == 0x8:
                code = struct.unpack("!H", pl[:2])[0] if len(pl) >= 2 else None
                fr.append(f"close({code})")
            else:
                fr.append(f"op{op}:{pl[:40].decode('utf-8', 'replace')}")
        out.append("frames=" + " | ".join(fr))
    if res.get("received"):
        out.append("received=" + " | ".join(str(m)[:40] for m in res["received"]))
    if res.get("body"):
        out.append("body=" + res["body"][:80].replace("\n", "\\n"))
    if res.get("ota"):
        out.append(f"ota={res['ota']['status']}")
    if res.get("json"):
        out.append("json=" + json.dumps(res["json"], ensure_ascii=False)[:120])
    return "; ".join(out)


def versions() -> dict[str, str]:
    import platform
    from importlib.metadata import version
    v = {"python": platform.python_version()}
    for mod in ("websockets", "aiohttp", "uvicorn", "starlette"):
        v[mod] = version(mod)
    v["nginx"] = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip().split("/")[-1]
    v["openssl"] = ssl.OPENSSL_VERSION
    v["tcpdump"] = subprocess.run(["tcpdump", "--version"], capture_output=True, text=True
                                  ).stdout.splitlines()[0].split()[-1]
    v["kernel"] = platform.release()
    return v


def write_run_info(results: dict) -> None:
    """Merge this run's versions and per-scenario outcomes into record/last-run.json."""
    fn = HERE / "last-run.json"
    info = json.loads(fn.read_text()) if fn.exists() else {}
    info["versions"] = versions()
    sc = info.setdefault("scenarios", {})
    for name, res in results.items():
        sc[name] = {"recorded": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "client_saw": summarize(res)}
    fn.write_text(json.dumps(info, indent=1, ensure_ascii=False, sort_keys=True) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description="record wsdiag loopback captures")
    ap.add_argument("--only", help="comma-separated scenario names (default: all)")
    ap.add_argument("--out", default=str(HERE.parent), help="output directory (default: captures/)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep-tmp", action="store_true")
    args = ap.parse_args()
    if args.list:
        for s in SCENARIOS:
            print(f"{s.name:45s} {s.shows}")
        return 0
    for tool in ("tcpdump", "nginx", "openssl"):
        if not shutil.which(tool):
            print(f"missing {tool}", file=sys.stderr)
            return 2
    only = set(args.only.split(",")) if args.only else None
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="wsdiag-record-"))
    results = {}
    failed = 0
    t0 = time.time()
    for sc in SCENARIOS:
        if only and sc.name not in only:
            continue
        ctx = Ctx(sc.name, out, tmp)
        t = time.time()
        try:
            res = sc.run(ctx)
            results[sc.name] = res
            print(f"[ok]   {sc.name} ({time.time() - t:.1f}s): {summarize(res)}", flush=True)
        except Exception:
            failed += 1
            print(f"[FAIL] {sc.name}:\n{traceback.format_exc()}", flush=True)
        finally:
            ctx.stop()
    write_run_info(results)
    print(f"done in {time.time() - t0:.1f}s, {failed} failed; server logs in {tmp}")
    if not args.keep_tmp and not failed:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
