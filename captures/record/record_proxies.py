#!/usr/bin/env python3
"""Re-record loopback captures of real reverse/forward proxies in front of a WebSocket
backend (HAProxy 2.6, Caddy 2.6, Apache httpd 2.4 mod_proxy*, Squid 5.7).

Run as root:  python3 record_proxies.py [--only NAME,NAME...] [--list]
Needs: tcpdump, haproxy, caddy, apache2, squid, openssl, python3 + websockets, and the
wsdiag repo's recorder backends in this folder (used unmodified).

Only 127.0.0.1 is contacted; only ports 18000-18999 are used.  All configs are embedded.
Each capture is written to captures/proxies/NAME.pcap; configs, logs and ground-truth notes of
the client side (results.json) go to $WSDIAG_RECORD_WORK (default /tmp/wsdiag-record-proxies).
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import time
import traceback
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "proxies"  # captures/proxies/
RUN = Path(os.environ.get("WSDIAG_RECORD_WORK", "/tmp/wsdiag-record-proxies"))  # configs, logs
REC = Path(__file__).resolve().parent  # the backends of record.py, used unmodified
PY = sys.executable

# ports (18000-18999 only)
XZ = 18001        # xiaozhi-like backend
QUIET = 18002     # websockets echo, pings off
DOWN = 18009      # nothing listens here
HAP, HAP_TLS = 18101, 18143
CADDY, CADDY_TLS = 18201, 18243
APACHE = 18301
SQUID = 18401

DEV = "a0:b7:65:12:34:56"
CID = "3f2b8c1e-9a7d-4e21-b0c4-5d6e7f809a1b"
TOKEN = "test-token"
HELLO = ('{"type":"hello","version":1,"features":{"mcp":true},"transport":"websocket",'
         '"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}')


# ------------------------------------------------------------------------ processes
def listening(port: int) -> bool:
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(fn) as f:
            next(f)
            for line in f:
                p = line.split()
                if p[3] == "0A" and int(p[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


class Procs:
    def __init__(self, name: str) -> None:
        self.name = name
        self.dir = RUN / name
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o777)
        self.procs: list[subprocess.Popen] = []

    def write(self, fname: str, text: str) -> Path:
        p = self.dir / fname
        p.write_text(textwrap.dedent(text).lstrip())
        os.chmod(p, 0o644)
        return p

    def start(self, label: str, argv: list[str], port: int | None, env: dict | None = None,
              timeout: float = 10) -> subprocess.Popen:
        if port is not None and listening(port):
            raise RuntimeError(f"port {port} already in use")
        log = open(self.dir / f"{label}.log", "wb")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                             env={**os.environ, **(env or {})}, cwd=self.dir)
        self.procs.append(p)
        if port is not None:
            t0 = time.time()
            while not listening(port):
                if p.poll() is not None or time.time() - t0 > timeout:
                    raise RuntimeError(f"{label} did not listen on {port}: "
                                       + (self.dir / f"{label}.log").read_text()[-2000:])
                time.sleep(0.05)
            time.sleep(0.2)
        return p

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(self.procs):
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
        # make sure the ports are free again before the next scenario
        t0 = time.time()
        while any(listening(x) for x in (XZ, QUIET, HAP, HAP_TLS, CADDY, CADDY_TLS, APACHE, SQUID)) \
                and time.time() - t0 < 10:
            time.sleep(0.1)


@contextlib.contextmanager
def capture(name: str, ports: list[int]):
    pcap = OUT / f"{name}.pcap"
    errf = RUN / f"{name}.tcpdump.err"
    flt = " or ".join(f"tcp port {p}" for p in ports)
    with open(errf, "wb") as err:
        td = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-n", "-s", "0",
                               "-w", str(pcap), flt], stdout=subprocess.DEVNULL, stderr=err)
    t0 = time.time()
    while b"listening on" not in errf.read_bytes():
        if time.time() - t0 > 5:
            break
        time.sleep(0.02)
    try:
        yield pcap
    finally:
        time.sleep(0.5)
        td.send_signal(signal.SIGINT)
        td.wait(5)


# --------------------------------------------------------------------------- clients
def ws_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def esp32_request(host_hdr: str, path: str, headers: list[tuple[str, str]], target: str | None = None) -> bytes:
    """Firmware layout: request line, Host, then the other headers byte-wise sorted."""
    lines = [f"GET {target or path} HTTP/1.1", f"Host: {host_hdr}"]
    lines += [f"{k}: {v}" for k, v in sorted(headers, key=lambda kv: kv[0])]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def esp32_headers(token: str | None = TOKEN, device_hdr: str = "Device-Id", extra=None):
    h = []
    if token:
        h.append(("Authorization", f"Bearer {token}"))
    h += [("Client-Id", CID), ("Connection", "Upgrade"), (device_hdr, DEV), ("Protocol-Version", "1"),
          ("Sec-WebSocket-Key", ws_key()), ("Sec-WebSocket-Version", "13"), ("Upgrade", "websocket")]
    h += extra or []
    return h


def mask_frame(op: int, payload: bytes) -> bytes:
    m = os.urandom(4)
    n = len(payload)
    hdr = bytes([0x80 | op])
    if n < 126:
        hdr += bytes([0x80 | n])
    elif n < 65536:
        hdr += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        hdr += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return hdr + m + bytes(b ^ m[i % 4] for i, b in enumerate(payload))


def parse_frames(buf: bytes):
    out = []
    while len(buf) >= 2:
        op, n = buf[0] & 0x0F, buf[1] & 0x7F
        i = 2
        if n == 126:
            if len(buf) < 4:
                break
            n, i = struct.unpack("!H", buf[2:4])[0], 4
        elif n == 127:
            if len(buf) < 10:
                break
            n, i = struct.unpack("!Q", buf[2:10])[0], 10
        if len(buf) < i + n:
            break
        out.append((op, buf[i:i + n]))
        buf = buf[i + n:]
    return out, buf


def read_response(s: socket.socket, wait: float, rest: bytes = b"") -> tuple[str, bytes]:
    buf = rest
    deadline = time.time() + wait
    while b"\r\n\r\n" not in buf and time.time() < deadline:
        s.settimeout(max(0.05, deadline - time.time()))
        try:
            d = s.recv(65536)
        except (TimeoutError, socket.timeout):
            break
        if not d:
            break
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


def raw_exchange(port: int, data: bytes, *, tls: bool = False, wait: float = 3.0,
                 connect_first: bytes | None = None) -> dict:
    """ESP32-like client.  connect_first: a CONNECT request sent first (forward proxy)."""
    res: dict = {"status": None, "frames": [], "error": None}
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if connect_first is not None:
            s.sendall(connect_first)
            head, rest = read_response(s, wait)
            res["connect_head"] = head
            if not head.startswith("HTTP/1.1 200") and not head.startswith("HTTP/1.0 200"):
                # read the error page body
                s.settimeout(0.5)
                with contextlib.suppress(OSError):
                    while d := s.recv(65536):
                        rest += d
                res["connect_body"] = rest.decode("utf-8", "replace")[:400]
                return res
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname="localhost")
        s.sendall(data)
        head, rest = read_response(s, wait)
        res["head"] = head
        if head.startswith("HTTP/"):
            res["status"] = int(head.split()[1])
        if res["status"] == 101:
            s.sendall(mask_frame(0x1, HELLO.encode()))
            deadline = time.time() + wait
            while time.time() < deadline:
                frames, rest = parse_frames(rest)
                res["frames"] += [(op, pl.decode("utf-8", "replace")[:120]) for op, pl in frames]
                if any(op == 8 for op, _ in res["frames"]) or any(op == 1 for op, _ in res["frames"]):
                    time.sleep(0.3)
                    break
                s.settimeout(max(0.05, deadline - time.time()))
                try:
                    d = s.recv(65536)
                except (TimeoutError, socket.timeout):
                    continue
                if not d:
                    res["closed_by_peer"] = True
                    break
                rest += d
        else:
            s.settimeout(1.0)
            with contextlib.suppress(OSError):
                while d := s.recv(65536):
                    rest += d
                    if len(rest) > 20000:
                        break
            res["body"] = rest.decode("utf-8", "replace")[:400]
    except OSError as e:
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        with contextlib.suppress(OSError):
            s.close()
    return res


def esp32(port: int, path: str = "/xiaozhi/v1/", host_hdr: str = "127.0.0.1", **kw) -> dict:
    hk = {k: kw.pop(k) for k in ("token", "device_hdr", "extra") if k in kw}
    target = kw.pop("target", None)
    return raw_exchange(port, esp32_request(host_hdr, path, esp32_headers(**hk), target), **kw)


def ws_idle_client(url: str, n: int, silence: float, parallel: bool = False) -> list[dict]:
    """websockets client, keep-alive pings off, silent longer than the proxy timeout."""
    from websockets.asyncio.client import connect

    async def one() -> dict:
        r: dict = {}
        t0 = time.time()
        try:
            async with connect(url, ping_interval=None, open_timeout=5, close_timeout=2) as ws:
                await ws.send("hi")
                r["echo"] = await asyncio.wait_for(ws.recv(), 3)
                t1 = time.time()
                try:
                    await asyncio.wait_for(ws.recv(), silence)
                except asyncio.TimeoutError:
                    r["closed"] = False
                except Exception as e:  # ConnectionClosed
                    r["closed"] = True
                    r["closed_after"] = round(time.time() - t1, 2)
                    r["exc"] = repr(e)[:200]
        except Exception as e:
            r["error"] = repr(e)[:300]
        r["total"] = round(time.time() - t0, 2)
        return r

    if not parallel:
        out = []
        for _ in range(n):
            out.append(asyncio.run(one()))
            time.sleep(0.3)
        return out

    async def staggered() -> list[dict]:
        async def later(i: int) -> dict:
            await asyncio.sleep(i * 1.5)
            return await one()
        return list(await asyncio.gather(*(later(i) for i in range(n))))
    return asyncio.run(staggered())


# --------------------------------------------------------------------------- backends
def xiaozhi(P: Procs, port: int = XZ) -> None:
    P.start("xiaozhi", [PY, str(REC / "xiaozhi_like_server.py"), "--host", "127.0.0.1",
                        "--port", str(port), "--auth-key", "k"], port)


def quiet(P: Procs, port: int = QUIET) -> None:
    P.start("wsquiet", [PY, str(REC / "servers.py"), "ws-quiet", "--host", "127.0.0.1",
                        "--port", str(port)], port)


def make_cert() -> tuple[Path, Path, Path]:
    d = RUN / "tls"
    d.mkdir(parents=True, exist_ok=True)
    crt, key, pem = d / "cert.pem", d / "key.pem", d / "combined.pem"
    if not pem.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "365",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", str(key), "-out", str(crt)], check=True, capture_output=True)
        pem.write_bytes(crt.read_bytes() + key.read_bytes())
    for f in (crt, key, pem):
        os.chmod(f, 0o644)
    os.chmod(d, 0o755)
    return crt, key, pem


# ---------------------------------------------------------------------------- HAProxy
HAP_GLOBAL = """
global
    log stdout format raw local0
    maxconn 256
defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout tunnel 1h
"""


def haproxy(P: Procs, body: str, ports=(HAP,), glob: str = HAP_GLOBAL) -> None:
    cfg = P.write("haproxy.cfg", glob + textwrap.dedent(body))
    P.start("haproxy", ["haproxy", "-db", "-f", str(cfg)], ports[0])
    for p in ports[1:]:
        while not listening(p):
            time.sleep(0.05)


HAP_PASS = f"""
frontend ws_in
    bind 127.0.0.1:{HAP}
    default_backend xiaozhi
backend xiaozhi
    server s1 127.0.0.1:{XZ}
"""


def s_haproxy_pass(P):
    xiaozhi(P)
    haproxy(P, HAP_PASS)
    with capture("haproxy-pass-101", [HAP, XZ]):
        return esp32(HAP, host_hdr="127.0.0.1")


def s_haproxy_deny(P):
    xiaozhi(P)
    haproxy(P, f"""
frontend ws_in
    bind 127.0.0.1:{HAP}
    acl allowed_src src 10.0.0.0/8 192.168.0.0/16
    http-request deny unless allowed_src
    default_backend xiaozhi
backend xiaozhi
    server s1 127.0.0.1:{XZ}
""")
    with capture("haproxy-deny-403", [HAP, XZ]):
        return esp32(HAP)


def s_haproxy_down(P):
    haproxy(P, f"""
frontend ws_in
    bind 127.0.0.1:{HAP}
    default_backend xiaozhi
backend xiaozhi
    server s1 127.0.0.1:{DOWN}
""")
    with capture("haproxy-backend-down-503", [HAP, DOWN]):
        return esp32(HAP, wait=8)


def s_haproxy_down_check(P):
    haproxy(P, f"""
frontend ws_in
    bind 127.0.0.1:{HAP}
    default_backend xiaozhi
backend xiaozhi
    server s1 127.0.0.1:{DOWN} check inter 1s fall 1
""")
    time.sleep(2.5)  # health check marks s1 DOWN before the capture
    with capture("haproxy-backend-down-check-503", [HAP]):
        return esp32(HAP)


def s_haproxy_noupgrade(P):
    xiaozhi(P)
    haproxy(P, f"""
frontend ws_in
    bind 127.0.0.1:{HAP}
    # copied "hardening": strip hop-by-hop headers
    http-request del-header Upgrade
    default_backend xiaozhi
backend xiaozhi
    server s1 127.0.0.1:{XZ}
""")
    with capture("haproxy-del-upgrade-426", [HAP, XZ]):
        return esp32(HAP)


def s_haproxy_wrongpath(P):
    xiaozhi(P)
    haproxy(P, f"""
frontend ws_in
    bind 127.0.0.1:{HAP}
    acl is_ws path_beg /xiaozhi/v1/
    use_backend xiaozhi if is_ws
backend xiaozhi
    server s1 127.0.0.1:{XZ}
""")
    with capture("haproxy-wrong-path-503", [HAP, XZ]):
        return esp32(HAP, path="/ws/")


def s_haproxy_idle(P):
    quiet(P)
    haproxy(P, f"""
frontend ws_in
    bind 127.0.0.1:{HAP}
    timeout client 5s
    default_backend ws
backend ws
    timeout server 5s
    timeout tunnel 5s
    server s1 127.0.0.1:{QUIET}
""")
    with capture("haproxy-idle-timeout-5s", [HAP, QUIET]):
        return ws_idle_client(f"ws://127.0.0.1:{HAP}/", 3, 9)


def s_haproxy_idle_default(P):
    """Debian's stock haproxy.cfg defaults (timeout client/server 50000 ms) and no `timeout tunnel`."""
    quiet(P)
    debian_defaults = (HAP_GLOBAL.replace("    timeout tunnel 1h\n", "")
                       .replace("timeout client 30s", "timeout client 50000")
                       .replace("timeout server 30s", "timeout server 50000"))
    haproxy(P, f"""
frontend ws_in
    bind 127.0.0.1:{HAP}
    default_backend ws
backend ws
    server s1 127.0.0.1:{QUIET}
""", glob=debian_defaults)
    with capture("haproxy-idle-timeout-50s-debian-default", [HAP, QUIET]):
        return ws_idle_client(f"ws://127.0.0.1:{HAP}/", 3, 56, parallel=True)


def s_haproxy_underscore(P):
    xiaozhi(P)
    haproxy(P, HAP_PASS)
    with capture("haproxy-underscore-device-id", [HAP, XZ]):
        return esp32(HAP, device_hdr="Device_Id")


def s_haproxy_bighdr(P):
    xiaozhi(P)
    haproxy(P, HAP_PASS)
    with capture("haproxy-big-header-400", [HAP, XZ]):
        return esp32(HAP, token="A" * 16384)


def s_haproxy_tls(P, kind):
    _, _, pem = make_cert()
    xiaozhi(P)
    haproxy(P, f"""
frontend ws_tls
    bind 127.0.0.1:{HAP_TLS} ssl crt {pem}
    default_backend xiaozhi
frontend ws_plain
    bind 127.0.0.1:{HAP}
    default_backend xiaozhi
backend xiaozhi
    server s1 127.0.0.1:{XZ}
""", ports=(HAP_TLS, HAP))
    if kind == "pass":
        with capture("haproxy-tls-pass-101", [HAP_TLS, XZ]):
            return esp32(HAP_TLS, tls=True, host_hdr="localhost")
    if kind == "plain2tls":
        with capture("haproxy-tls-plain-to-tls-port", [HAP_TLS, XZ]):
            return esp32(HAP_TLS, host_hdr="localhost")
    with capture("haproxy-tls-wss-to-plain-port", [HAP, XZ]):
        return esp32(HAP, tls=True, host_hdr="localhost")


# ------------------------------------------------------------------------------ Caddy
CADDY_ENV = {"XDG_DATA_HOME": str(RUN / "caddy-data"), "XDG_CONFIG_HOME": str(RUN / "caddy-config"),
             "HOME": str(RUN / "caddy-home")}


def caddy(P: Procs, site: str, port: int = CADDY, extra_ports=(), glob: str = "") -> None:
    cf = P.write("Caddyfile", "{\n\tadmin off\n\tauto_https off\n" + glob + "}\n" + textwrap.dedent(site))
    P.start("caddy", ["caddy", "run", "--config", str(cf), "--adapter", "caddyfile"], port, env=CADDY_ENV)
    for p in extra_ports:
        while not listening(p):
            time.sleep(0.05)


CADDY_PASS = f"""
http://127.0.0.1:{CADDY} {{
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:{XZ}
}}
"""


def s_caddy_pass(P):
    xiaozhi(P)
    caddy(P, CADDY_PASS)
    with capture("caddy-pass-101", [CADDY, XZ]):
        return esp32(CADDY)


def s_caddy_deny(P):
    xiaozhi(P)
    caddy(P, f"""
http://127.0.0.1:{CADDY} {{
	bind 127.0.0.1
	@denied not remote_ip 10.0.0.0/8 192.168.0.0/16
	respond @denied "Access denied" 403
	reverse_proxy 127.0.0.1:{XZ}
}}
""")
    with capture("caddy-deny-403", [CADDY, XZ]):
        return esp32(CADDY)


def s_caddy_deny_empty(P):
    xiaozhi(P)
    caddy(P, f"""
http://127.0.0.1:{CADDY} {{
	bind 127.0.0.1
	@denied not remote_ip 10.0.0.0/8 192.168.0.0/16
	respond @denied 403
	reverse_proxy 127.0.0.1:{XZ}
}}
""")
    with capture("caddy-deny-403-empty", [CADDY, XZ]):
        return esp32(CADDY)


def s_caddy_abort(P):
    xiaozhi(P)
    caddy(P, f"""
http://127.0.0.1:{CADDY} {{
	bind 127.0.0.1
	@denied not remote_ip 10.0.0.0/8 192.168.0.0/16
	abort @denied
	reverse_proxy 127.0.0.1:{XZ}
}}
""")
    with capture("caddy-deny-abort", [CADDY, XZ]):
        return esp32(CADDY)


def s_caddy_down(P):
    caddy(P, f"""
http://127.0.0.1:{CADDY} {{
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:{DOWN}
}}
""")
    with capture("caddy-backend-down-502", [CADDY, DOWN]):
        return esp32(CADDY)


def s_caddy_wrongpath(P):
    xiaozhi(P)
    caddy(P, f"""
http://127.0.0.1:{CADDY} {{
	bind 127.0.0.1
	handle /xiaozhi/v1/* {{
		reverse_proxy 127.0.0.1:{XZ}
	}}
}}
""")
    with capture("caddy-wrong-path-200-empty", [CADDY, XZ]):
        return esp32(CADDY, path="/ws/")


def s_caddy_wrongpath_404(P):
    xiaozhi(P)
    caddy(P, f"""
http://127.0.0.1:{CADDY} {{
	bind 127.0.0.1
	handle /xiaozhi/v1/* {{
		reverse_proxy 127.0.0.1:{XZ}
	}}
	handle {{
		respond "Not found" 404
	}}
}}
""")
    with capture("caddy-wrong-path-404", [CADDY, XZ]):
        return esp32(CADDY, path="/xiaozhi/v1")


def s_caddy_idle(P):
    """Caddy 2.6 has no stream_timeout (2.7+); a transport read_timeout copied from the docs
    also ends idle WebSocket tunnels."""
    quiet(P)
    caddy(P, f"""
http://127.0.0.1:{CADDY} {{
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:{QUIET} {{
		transport http {{
			read_timeout 15s
		}}
	}}
}}
""")
    with capture("caddy-idle-timeout-15s-read-timeout", [CADDY, QUIET]):
        return ws_idle_client(f"ws://127.0.0.1:{CADDY}/", 3, 20, parallel=True)


def s_caddy_underscore(P):
    xiaozhi(P)
    caddy(P, CADDY_PASS)
    with capture("caddy-underscore-device-id", [CADDY, XZ]):
        return esp32(CADDY, device_hdr="Device_Id")


def s_caddy_bighdr(P):
    xiaozhi(P)
    caddy(P, CADDY_PASS)
    with capture("caddy-big-header", [CADDY, XZ]):
        return esp32(CADDY, token="A" * 16384)


def s_caddy_tls(P, kind):
    crt, key, _ = make_cert()
    xiaozhi(P)
    caddy(P, f"""
https://localhost:{CADDY_TLS}, https://127.0.0.1:{CADDY_TLS} {{
	bind 127.0.0.1
	tls {crt} {key}
	reverse_proxy 127.0.0.1:{XZ}
}}
""", port=CADDY_TLS)
    if kind == "pass":
        with capture("caddy-tls-pass-101", [CADDY_TLS, XZ]):
            return esp32(CADDY_TLS, tls=True, host_hdr="localhost")
    with capture("caddy-tls-plain-to-tls-port", [CADDY_TLS, XZ]):
        return esp32(CADDY_TLS, host_hdr="localhost")


def s_caddy_wss_to_plain(P):
    xiaozhi(P)
    caddy(P, CADDY_PASS)
    with capture("caddy-wss-to-plain-port", [CADDY, XZ]):
        return esp32(CADDY, tls=True, host_hdr="localhost")


# ----------------------------------------------------------------------------- Apache
MODS = "/usr/lib/apache2/modules"


def apache(P: Procs, vhost: str, modules=("proxy", "proxy_http", "proxy_wstunnel")) -> None:
    (P.dir / "htdocs").mkdir(exist_ok=True)
    loads = "\n".join(f"LoadModule {m}_module {MODS}/mod_{m}.so" for m in
                      ("mpm_event", "authz_core", "authz_host", "rewrite", *modules))
    cfg = P.write("httpd.conf", f"""
ServerRoot {P.dir}
ServerName localhost
Listen 127.0.0.1:{APACHE}
PidFile {P.dir}/httpd.pid
DefaultRuntimeDir {P.dir}
Mutex file:{P.dir} default
ErrorLog {P.dir}/error.log
LogLevel warn proxy:info
User www-data
Group www-data
ServerTokens OS
{loads}
DocumentRoot {P.dir}/htdocs
<Directory {P.dir}/htdocs>
    Require all granted
</Directory>
<VirtualHost *:{APACHE}>
    ServerName localhost
{textwrap.indent(textwrap.dedent(vhost), '    ')}
</VirtualHost>
""")
    P.start("apache", ["apache2", "-DFOREGROUND", "-f", str(cfg)], APACHE)


AP_PASS = f"""
ProxyPreserveHost On
ProxyPass /xiaozhi/v1/ ws://127.0.0.1:{XZ}/xiaozhi/v1/
ProxyPassReverse /xiaozhi/v1/ ws://127.0.0.1:{XZ}/xiaozhi/v1/
"""


def s_apache_pass(P):
    xiaozhi(P)
    apache(P, AP_PASS)
    with capture("apache-pass-101", [APACHE, XZ]):
        return esp32(APACHE)


def s_apache_pass_upgrade(P):
    xiaozhi(P)
    apache(P, f"""
ProxyPreserveHost On
ProxyPass / http://127.0.0.1:{XZ}/ upgrade=websocket
ProxyPassReverse / http://127.0.0.1:{XZ}/
""", modules=("proxy", "proxy_http"))
    with capture("apache-upgrade-websocket-pass-101", [APACHE, XZ]):
        return esp32(APACHE)


def s_apache_deny(P):
    xiaozhi(P)
    apache(P, AP_PASS + """
<Location "/xiaozhi/">
    Require all denied
</Location>
""")
    with capture("apache-deny-403", [APACHE, XZ]):
        return esp32(APACHE)


def s_apache_down(P):
    apache(P, f"""
ProxyPass /xiaozhi/v1/ ws://127.0.0.1:{DOWN}/xiaozhi/v1/
""")
    with capture("apache-backend-down-503", [APACHE, DOWN]):
        return esp32(APACHE)


def s_apache_noupgrade(P):
    xiaozhi(P)
    apache(P, f"""
ProxyPreserveHost On
ProxyPass / http://127.0.0.1:{XZ}/
ProxyPassReverse / http://127.0.0.1:{XZ}/
""", modules=("proxy", "proxy_http"))
    with capture("apache-no-upgrade-200", [APACHE, XZ]):
        return esp32(APACHE)


def s_apache_wrongpath(P):
    xiaozhi(P)
    apache(P, AP_PASS)
    with capture("apache-wrong-path-404", [APACHE, XZ]):
        return esp32(APACHE, path="/xiaozhi/v1")


def s_apache_idle(P):
    quiet(P)
    apache(P, f"""
# tunnel idle timeout = max(client Timeout, backend timeout): both must be short
Timeout 5
ProxyTimeout 5
ProxyPass / ws://127.0.0.1:{QUIET}/
""")
    with capture("apache-idle-timeout-5s", [APACHE, QUIET]):
        return ws_idle_client(f"ws://127.0.0.1:{APACHE}/", 3, 9)


def s_apache_idle15(P):
    quiet(P)
    apache(P, f"""
Timeout 15
ProxyTimeout 15
ProxyPass / ws://127.0.0.1:{QUIET}/
""")
    with capture("apache-idle-timeout-15s", [APACHE, QUIET]):
        return ws_idle_client(f"ws://127.0.0.1:{APACHE}/", 3, 20, parallel=True)


def s_apache_underscore(P):
    xiaozhi(P)
    apache(P, AP_PASS)
    with capture("apache-underscore-device-id", [APACHE, XZ]):
        return esp32(APACHE, device_hdr="Device_Id")


def s_apache_bighdr(P):
    xiaozhi(P)
    apache(P, AP_PASS)
    with capture("apache-big-header-400", [APACHE, XZ]):
        return esp32(APACHE, token="A" * 16384)


# ------------------------------------------------------------------------------ Squid
def squid(P: Procs, rules: str) -> None:
    cfg = P.write("squid.conf", f"""
http_port 127.0.0.1:{SQUID}
pid_filename {P.dir}/squid.pid
access_log stdio:{P.dir}/access.log
cache_log {P.dir}/cache.log
cache_store_log none
coredump_dir {P.dir}
cache deny all
shutdown_lifetime 1 seconds
acl SSL_ports port 443
acl Safe_ports port 80 21 443 70 210 1025-65535 280 488 591 777
acl CONNECT method CONNECT
{textwrap.dedent(rules)}
""")
    P.start("squid", ["squid", "-N", "-f", str(cfg)], SQUID, timeout=20)


SQ_DEFAULT = """
http_access deny !Safe_ports
http_access deny CONNECT !SSL_ports
http_access allow localhost
http_access deny all
"""
SQ_OPEN = """
acl ws_ports port 18001
http_access deny !Safe_ports
http_access deny CONNECT !SSL_ports !ws_ports
http_access allow localhost
http_access deny all
"""


def connect_req(port: int) -> bytes:
    return f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def s_squid_connect_pass(P):
    xiaozhi(P)
    squid(P, SQ_OPEN)
    with capture("squid-connect-pass-101", [SQUID, XZ]):
        return esp32(SQUID, connect_first=connect_req(XZ))


def s_squid_connect_deny(P):
    xiaozhi(P)
    squid(P, SQ_DEFAULT)
    with capture("squid-connect-deny-403", [SQUID, XZ]):
        return esp32(SQUID, connect_first=connect_req(XZ))


def s_squid_connect_down(P):
    squid(P, SQ_OPEN.replace("18001", str(DOWN)))
    with capture("squid-connect-backend-down-503", [SQUID, DOWN]):
        return esp32(SQUID, connect_first=connect_req(DOWN), wait=8)


def ws_lib_via_proxy(url: str, proxy: str) -> dict:
    """The websockets library (>= 15) tunnels through an HTTP proxy with CONNECT."""
    from websockets.asyncio.client import connect

    async def go() -> dict:
        r: dict = {}
        try:
            async with connect(url, proxy=proxy, open_timeout=5, close_timeout=2,
                               additional_headers={"Device-Id": DEV, "Client-Id": CID,
                                                   "Authorization": f"Bearer {TOKEN}",
                                                   "Protocol-Version": "1"}) as ws:
                await ws.send(HELLO)
                r["reply"] = (await asyncio.wait_for(ws.recv(), 3))[:120]
        except Exception as e:
            r["error"] = repr(e)[:300]
        return r
    return asyncio.run(go())


def s_squid_lib_pass(P):
    xiaozhi(P)
    squid(P, SQ_OPEN)
    with capture("squid-connect-websockets-lib-pass-101", [SQUID, XZ]):
        return ws_lib_via_proxy(f"ws://127.0.0.1:{XZ}/xiaozhi/v1/", f"http://127.0.0.1:{SQUID}")


def s_squid_lib_deny(P):
    xiaozhi(P)
    squid(P, SQ_DEFAULT)
    with capture("squid-connect-websockets-lib-deny-403", [SQUID, XZ]):
        return ws_lib_via_proxy(f"ws://127.0.0.1:{XZ}/xiaozhi/v1/", f"http://127.0.0.1:{SQUID}")


def s_squid_get_noupgrade(P):
    xiaozhi(P)
    squid(P, SQ_DEFAULT)
    with capture("squid-get-absolute-no-upgrade-200", [SQUID, XZ]):
        return esp32(SQUID, host_hdr=f"127.0.0.1:{XZ}", target=f"http://127.0.0.1:{XZ}/xiaozhi/v1/")


def s_squid_get_upgrade(P):
    xiaozhi(P)
    squid(P, "http_upgrade_request_protocols websocket allow all\n" + SQ_DEFAULT)
    with capture("squid-get-absolute-upgrade-101", [SQUID, XZ]):
        return esp32(SQUID, host_hdr=f"127.0.0.1:{XZ}", target=f"http://127.0.0.1:{XZ}/xiaozhi/v1/")


def s_squid_get_ws_scheme(P):
    xiaozhi(P)
    squid(P, "http_upgrade_request_protocols websocket allow all\n" + SQ_DEFAULT)
    with capture("squid-get-ws-scheme", [SQUID, XZ]):
        return esp32(SQUID, host_hdr=f"127.0.0.1:{XZ}", target=f"ws://127.0.0.1:{XZ}/xiaozhi/v1/")


def s_squid_origin_form(P):
    xiaozhi(P)
    squid(P, SQ_DEFAULT)
    with capture("squid-origin-form-400", [SQUID, XZ]):
        return esp32(SQUID, host_hdr=f"127.0.0.1:{SQUID}")


def s_squid_deny_get(P):
    xiaozhi(P)
    squid(P, "acl lan src 10.0.0.0/8\nhttp_access deny !lan\n" + SQ_DEFAULT)
    with capture("squid-get-deny-403", [SQUID, XZ]):
        return esp32(SQUID, host_hdr=f"127.0.0.1:{XZ}", target=f"http://127.0.0.1:{XZ}/xiaozhi/v1/")


SCENARIOS = {
    "haproxy-pass-101": s_haproxy_pass,
    "haproxy-deny-403": s_haproxy_deny,
    "haproxy-backend-down-503": s_haproxy_down,
    "haproxy-backend-down-check-503": s_haproxy_down_check,
    "haproxy-del-upgrade-426": s_haproxy_noupgrade,
    "haproxy-wrong-path-503": s_haproxy_wrongpath,
    "haproxy-idle-timeout-5s": s_haproxy_idle,
    "haproxy-idle-timeout-50s-debian-default": s_haproxy_idle_default,
    "haproxy-underscore-device-id": s_haproxy_underscore,
    "haproxy-big-header-400": s_haproxy_bighdr,
    "haproxy-tls-pass-101": lambda P: s_haproxy_tls(P, "pass"),
    "haproxy-tls-plain-to-tls-port": lambda P: s_haproxy_tls(P, "plain2tls"),
    "haproxy-tls-wss-to-plain-port": lambda P: s_haproxy_tls(P, "wss2plain"),
    "caddy-pass-101": s_caddy_pass,
    "caddy-deny-403": s_caddy_deny,
    "caddy-deny-403-empty": s_caddy_deny_empty,
    "caddy-deny-abort": s_caddy_abort,
    "caddy-backend-down-502": s_caddy_down,
    "caddy-wrong-path-200-empty": s_caddy_wrongpath,
    "caddy-wrong-path-404": s_caddy_wrongpath_404,
    "caddy-idle-timeout-15s-read-timeout": s_caddy_idle,
    "caddy-underscore-device-id": s_caddy_underscore,
    "caddy-big-header": s_caddy_bighdr,
    "caddy-tls-pass-101": lambda P: s_caddy_tls(P, "pass"),
    "caddy-tls-plain-to-tls-port": lambda P: s_caddy_tls(P, "plain2tls"),
    "caddy-wss-to-plain-port": s_caddy_wss_to_plain,
    "apache-pass-101": s_apache_pass,
    "apache-upgrade-websocket-pass-101": s_apache_pass_upgrade,
    "apache-deny-403": s_apache_deny,
    "apache-backend-down-503": s_apache_down,
    "apache-no-upgrade-200": s_apache_noupgrade,
    "apache-wrong-path-404": s_apache_wrongpath,
    "apache-idle-timeout-5s": s_apache_idle,
    "apache-idle-timeout-15s": s_apache_idle15,
    "apache-underscore-device-id": s_apache_underscore,
    "apache-big-header-400": s_apache_bighdr,
    "squid-connect-pass-101": s_squid_connect_pass,
    "squid-connect-deny-403": s_squid_connect_deny,
    "squid-connect-backend-down-503": s_squid_connect_down,
    "squid-connect-websockets-lib-pass-101": s_squid_lib_pass,
    "squid-connect-websockets-lib-deny-403": s_squid_lib_deny,
    "squid-get-absolute-no-upgrade-200": s_squid_get_noupgrade,
    "squid-get-absolute-upgrade-101": s_squid_get_upgrade,
    "squid-get-ws-scheme": s_squid_get_ws_scheme,
    "squid-origin-form-400": s_squid_origin_form,
    "squid-get-deny-403": s_squid_deny_get,
}


def versions() -> str:
    out = []
    for cmd in (["haproxy", "-v"], ["caddy", "version"], ["apache2", "-v"], ["squid", "-v"],
                ["openssl", "version"], [PY, "-c", "import websockets;print('websockets', websockets.__version__)"]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        out.append("$ " + " ".join(cmd) + "\n" + "\n".join((r.stdout + r.stderr).strip().splitlines()[:2]))
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only")
    ap.add_argument("--list", action="store_true")
    a = ap.parse_args()
    if a.list:
        print("\n".join(SCENARIOS))
        return
    RUN.mkdir(parents=True, exist_ok=True)
    os.chmod(RUN, 0o777)
    (OUT / "VERSIONS.txt").write_text(versions())
    names = a.only.split(",") if a.only else list(SCENARIOS)
    resf = RUN / "results.json"
    results = json.loads(resf.read_text()) if resf.exists() else {}
    for name in names:
        P = Procs(name)
        print(f"== {name}", flush=True)
        try:
            r = SCENARIOS[name](P)
        except Exception:
            r = {"recorder_error": traceback.format_exc()[-1500:]}
        finally:
            P.stop()
        results[name] = r
        print(json.dumps(r, ensure_ascii=False)[:600], flush=True)
        resf.write_text(json.dumps(results, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
