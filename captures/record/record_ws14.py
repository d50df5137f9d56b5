#!/usr/bin/env python3
"""Re-record the xiaozhi handshake scenarios against websockets **14.2** (the version
xiaozhi-esp32-server pins), on loopback, with tcpdump.

Self-contained: needs root (tcpdump on lo), tcpdump, python3 (3.10+), and for the one
proxy scenario nginx.  Creates $WSDIAG_RECORD_WORK/venv with websockets==14.2 if it is missing
(or holds another version), starts ``xiaozhi_like_server.py`` (next to this file, unchanged) with
that venv's python on 127.0.0.1:15000-15999, records every scenario into
``<dir>/<name>.pcap`` and writes ``results.json`` (what the client saw, with timings) and
``logs/<name>.server.log`` (the server's log: 14.2's reason for each silent close).

Clients are raw sockets sending the ESP32 firmware's exact request bytes (spec 3.4:
``GET path HTTP/1.1``, ``Host`` without port, then the other headers byte-wise sorted, no
User-Agent/Origin/extensions); on a 101 the client sends the firmware hello as a masked
text frame and, on a Close frame, drops the socket without answering it (spec 3.5).
The firmware's request bytes, frames and tokens come from record.py (imported).

Usage:  python3 record_ws14.py [--only NAME,NAME] [--list] [--analyze]
        (--analyze also runs ``python3 -m analyzer analyze`` text + json into analysis/)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent  # captures/record/
sys.path.insert(0, str(HERE))
import record  # noqa: E402
from record import esp32_request, make_token, mask_frame, parse_frames, ws_key  # noqa: E402
OUT = HERE.parent / "xiaozhi-ws14"  # the captures and VERSIONS.txt
WORK = Path(os.environ.get("WSDIAG_RECORD_WORK", "/tmp/wsdiag-record-ws14"))  # venv, logs, results
VENV = WORK / "venv"
VPY = VENV / "bin" / "python"
SERVER = HERE / "xiaozhi_like_server.py"  # the same re-creation: it runs unchanged on 14.2
LOGS = WORK / "logs"
WS_VERSION = "14.2"
PORT_LO, PORT_HI = 15000, 15999
AUTH_KEY = "wsdiag-test-key"
DEV = "a0:b7:65:12:34:56"
CID = "3f2b8c1e-9a7d-4e21-b0c4-5d6e7f809a1b"
DEV_OTHER = "a0:b7:65:12:34:57"
PATH = "/xiaozhi/v1/"
FIRMWARE_HELLO = ('{"type":"hello","version":1,"features":{"mcp":true,"glyph_push":false},'
                  '"transport":"websocket","audio_params":{"format":"opus","sample_rate":16000,'
                  '"channels":1,"frame_duration":60}}')  # spec 3.5


# ============================================================ venv
def ensure_venv() -> str:
    def have() -> str | None:
        if not VPY.exists():
            return None
        r = subprocess.run([str(VPY), "-c", "import websockets;print(websockets.__version__)"],
                           capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    v = have()
    if v != WS_VERSION:
        print(f"[venv] creating {VENV} with websockets=={WS_VERSION} (found {v})", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(VPY), "-m", "pip", "install", "-q", f"websockets=={WS_VERSION}"], check=True)
        v = have()
    if v != WS_VERSION:
        raise SystemExit(f"venv has websockets {v}, need {WS_VERSION}")
    return v


# ============================================================ helpers (from record.py)





def esp32_headers(*args, key: str | None = "RANDOM", **kw) -> list[tuple[str, str]]:
    """record.py's firmware headers, plus key=None meaning 'no Sec-WebSocket-Key at all'."""
    h = record.esp32_headers(*args, key=None if key in (None, "RANDOM") else key, **kw)
    return [(n, v) for n, v in h if key is not None or n != "Sec-WebSocket-Key"]


def good_headers(**kw) -> list[tuple[str, str]]:
    return esp32_headers(token=make_token(CID, DEV), **kw)


# ============================================================ processes / capture
def _listening(port: int) -> bool:
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(fn) as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == "0A" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                    return True
    return False


class Ports:
    def __init__(self) -> None:
        self.next = PORT_LO

    def get(self) -> int:
        while self.next <= PORT_HI:
            p = self.next
            self.next += 1
            if _listening(p):
                continue
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    continue
            return p
        raise RuntimeError("no free port in 15000-15999")


PORTS = Ports()


class Ctx:
    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.tmp = LOGS / name
        self.tmp.mkdir(parents=True, exist_ok=True)

    def start(self, label: str, argv: list[str], port: int) -> None:
        log = open(LOGS / f"{self.name}.{label}.log", "wb")
        p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append((label, p))
        deadline = time.time() + 10
        while not _listening(port):
            if p.poll() is not None:
                raise RuntimeError(f"{label} exited early, see logs/{self.name}.{label}.log")
            if time.time() > deadline:
                raise RuntimeError(f"{label} not listening on {port}")
            time.sleep(0.05)

    def xiaozhi(self, port: int, *, auth: bool) -> None:
        argv = [str(VPY), str(SERVER), "--host", "127.0.0.1", "--port", str(port), "--auth-key", AUTH_KEY]
        self.start("server", argv + (["--auth"] if auth else []), port)

    def nginx(self, port: int, backend: int) -> None:
        conf = self.tmp / "nginx.conf"
        conf.write_text(NGINX_HTTP10_CONF.replace("@TMP@", str(self.tmp)).replace("@PORT@", str(port))
                        .replace("@BACKEND@", f"127.0.0.1:{backend}"))
        self.start("nginx", ["nginx", "-e", "stderr", "-p", str(self.tmp), "-c", str(conf)], port)

    @contextlib.contextmanager
    def capture(self, *ports: int):
        pcap = OUT / f"{self.name}.pcap"
        flt = " or ".join(f"tcp port {p}" for p in ports)
        errf = self.tmp / "tcpdump.err"
        with open(errf, "wb") as err:
            td = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-n", "-s", "0",
                                   "-w", str(pcap), flt], stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.time() + 5
        while b"listening on" not in errf.read_bytes():
            if td.poll() is not None or time.time() > deadline:
                raise RuntimeError("tcpdump did not start: " + errf.read_text())
            time.sleep(0.05)
        time.sleep(0.2)
        try:
            yield pcap
        finally:
            time.sleep(0.5)  # ~0.5 s after the client, let the last FIN/ACK through
            td.send_signal(signal.SIGINT)
            try:
                td.wait(5)
            except subprocess.TimeoutExpired:
                td.kill()
                td.wait()

    def stop(self) -> None:
        for _label, p in reversed(self.procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(4)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGKILL)
                    p.wait(2)
        self.procs.clear()


NGINX_HTTP10_CONF = """daemon off;
master_process on;
worker_processes 1;
pid @TMP@/nginx.pid;
error_log stderr info;
events { worker_connections 64; }
http {
    access_log @TMP@/access.log;
    client_body_temp_path @TMP@/body;
    proxy_temp_path @TMP@/proxy;
    fastcgi_temp_path @TMP@/fastcgi;
    uwsgi_temp_path @TMP@/uwsgi;
    scgi_temp_path @TMP@/scgi;
    # bare proxy_pass: nginx talks HTTP/1.0 upstream, no Upgrade/Connection forwarding
    server {
        listen 127.0.0.1:@PORT@;
        location /xiaozhi/v1/ {
            proxy_pass http://@BACKEND@;
        }
    }
}
"""


# ============================================================ the raw ESP32-like client
def exchange(port: int, data: bytes, *, hello: str | None = FIRMWARE_HELLO, wait: float = 3.0,
             tls: bool = False) -> dict:
    """Send ``data`` in one write; read what comes back until the server closes or
    ``wait`` s pass without the connection ending.  On 101 behave like the firmware.
    Timings are relative to the moment the last request byte was written."""
    r: dict = {"request_bytes": len(data), "status": None, "head": "", "body": "", "frames": [],
               "close_code": None, "server_end": None, "t_first_byte": None, "t_server_end": None,
               "client_end": "drop socket (no Close frame, like the ESP32)", "error": None}
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.settimeout(3)
    buf = b""
    try:
        s.connect(("127.0.0.1", port))
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            t0 = time.monotonic()
            try:
                ctx.wrap_socket(s, server_hostname="localhost")
            except (ssl.SSLError, OSError) as e:
                r["t_server_end"] = round(time.monotonic() - t0, 3)
                r["server_end"] = f"TLS handshake failed: {type(e).__name__}: {e}"
            return r
        s.sendall(data)
        t0 = time.monotonic()
        sent_hello = False
        deadline = t0 + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                r["server_end"] = (f"still open when the client dropped the socket "
                                   f"{time.monotonic() - t0:.1f} s after its request")
                break
            s.settimeout(left)
            try:
                d = s.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                r["server_end"] = "RST"
                r["t_server_end"] = round(time.monotonic() - t0, 3)
                break
            if not d:
                r["server_end"] = "FIN"
                r["t_server_end"] = round(time.monotonic() - t0, 3)
                break
            if r["t_first_byte"] is None:
                r["t_first_byte"] = round(time.monotonic() - t0, 3)
            buf += d
            if r["status"] is None and b"\r\n\r\n" in buf:
                head, _, rest = buf.partition(b"\r\n\r\n")
                r["head"] = head.decode("latin-1")
                with contextlib.suppress(Exception):
                    r["status"] = int(head.split()[1])
                buf = rest
                if r["status"] == 101 and hello is not None and not sent_hello:
                    s.sendall(mask_frame(0x1, hello.encode()))
                    sent_hello = True
            if r["status"] == 101:
                frames, buf = parse_frames(buf)
                for op, pl in frames:
                    t = round(time.monotonic() - t0, 3)
                    if op == 0x8:
                        code = struct.unpack("!H", pl[:2])[0] if len(pl) >= 2 else None
                        r["close_code"] = code
                        r["frames"].append({"t": t, "op": "close", "code": code,
                                            "reason": pl[2:].decode("utf-8", "replace")})
                    else:
                        r["frames"].append({"t": t, "op": {1: "text", 2: "binary", 9: "ping"}.get(op, op),
                                            "payload": pl.decode("utf-8", "replace")[:300]})
                    if op == 0x1 and pl.startswith(b'{"type": "hello"'):
                        deadline = min(deadline, time.monotonic() + 0.3)  # MCP initialize follows
                if r["close_code"] is not None:
                    r["server_end"] = "Close frame (client drops the socket without answering)"
                    r["t_server_end"] = r["frames"][-1]["t"]
                    break
    except OSError as e:
        r["error"] = f"{type(e).__name__}: {e}"
    finally:
        with contextlib.suppress(OSError):
            s.close()
    if r["status"] is None and buf:
        r["raw_response"] = buf[:400].decode("latin-1")
    elif r["status"] not in (None, 101):
        r["body"] = buf.decode("utf-8", "replace")
    return r


# ============================================================ scenarios
SCENARIOS: list[tuple[str, str, callable]] = []


def scenario(name: str, what: str):
    def deco(fn):
        SCENARIOS.append((name, what, fn))
        return fn
    return deco


def _xz(ctx: Ctx, req: bytes, *, auth: bool = True, **kw) -> dict:
    p = PORTS.get()
    ctx.xiaozhi(p, auth=auth)
    with ctx.capture(p):
        r = exchange(p, req, **kw)
    r["port"] = p
    return r


def req(headers: list[tuple[str, str]], path: str = PATH) -> bytes:
    return esp32_request("127.0.0.1", path, headers)


# 1 -----------------------------------------------------------------------------------
@scenario("ws14-good-handshake", "auth on, valid HMAC token -> 101 + hello exchange")
def sc_good(ctx):
    return _xz(ctx, req(good_headers()))


# 2: parser-level rejections ------------------------------------------------------------
@scenario("ws14-http10-silent-close", "request line 'GET /xiaozhi/v1/ HTTP/1.0' (auth on, valid token)")
def sc_http10(ctx):
    return _xz(ctx, req(good_headers()).replace(b"HTTP/1.1", b"HTTP/1.0", 1))


@scenario("ws14-post-silent-close", "method POST instead of GET (auth on, valid token)")
def sc_post(ctx):
    return _xz(ctx, req(good_headers()).replace(b"GET ", b"POST ", 1))


@scenario("ws14-content-length-0-silent-close", "good firmware request plus 'Content-Length: 0'")
def sc_clen0(ctx):
    return _xz(ctx, req(good_headers(extra=[("Content-Length", "0")])))


@scenario("ws14-bare-lf-silent-close", "good firmware request with every CRLF replaced by a bare LF")
def sc_bare_lf(ctx):
    return _xz(ctx, req(good_headers()).replace(b"\r\n", b"\n"))


@scenario("ws14-too-many-headers-silent-close", "good firmware request plus 130 'X-Pad-NNN: x' headers (139 in all)")
def sc_many(ctx):
    return _xz(ctx, req(good_headers(extra=[(f"X-Pad-{i:03d}", "x") for i in range(130)])))


@scenario("ws14-long-header-line-silent-close", "good firmware request plus one 'X-Long: ' header line of 9000 bytes (> 8192)")
def sc_long(ctx):
    return _xz(ctx, req(good_headers(extra=[("X-Long", "a" * (9000 - len("X-Long: ")))])))


@scenario("ws14-unfinished-head-timeout", "good firmware request without the final empty line; the client waits 15 s")
def sc_unfinished(ctx):
    return _xz(ctx, req(good_headers())[:-2], wait=15.0)


# 2b: the exact limits of websockets 14.2's parser (wsdiag's off-by-one risk) ----------
def _n_headers(total: int) -> list[tuple[str, str]]:
    base = good_headers()  # + Host = 9 header lines
    return base + [(f"X-Pad-{i:03d}", "x") for i in range(total - len(base) - 1)]


@scenario("ws14-128-headers-good", "good firmware request padded to exactly 128 header lines (Host included)")
def sc_128(ctx):
    return _xz(ctx, req(_n_headers(128)))


@scenario("ws14-129-headers-silent-close", "good firmware request padded to 129 header lines (Host included)")
def sc_129(ctx):
    return _xz(ctx, req(_n_headers(129)))


def _line(total: int) -> list[tuple[str, str]]:
    return good_headers(extra=[("X-Long", "a" * (total - len("X-Long: ")))])


@scenario("ws14-header-line-8190-good", "one header line of 8190 bytes + CRLF = 8192 bytes (at the limit)")
def sc_8190(ctx):
    return _xz(ctx, req(_line(8190)))


@scenario("ws14-header-line-8191-silent-close", "one header line of 8191 bytes + CRLF = 8193 bytes (one over)")
def sc_8191(ctx):
    return _xz(ctx, req(_line(8191)))


# 3: handshake-level rejections ---------------------------------------------------------
@scenario("ws14-missing-upgrade-426", "Connection: Upgrade but no Upgrade header (auth off)")
def sc_426(ctx):
    return _xz(ctx, req(esp32_headers(upgrade=None)), auth=False)


@scenario("ws14-connection-keepalive-upgrade-200", "'Connection: keep-alive, Upgrade' (Firefox style), auth on, valid token")
def sc_conn_list(ctx):
    return _xz(ctx, req(good_headers(connection="keep-alive, Upgrade")))


@scenario("ws14-missing-websocket-key-400", "no Sec-WebSocket-Key header (auth off)")
def sc_nokey(ctx):
    return _xz(ctx, req(esp32_headers(key=None)), auth=False)


@scenario("ws14-websocket-version-8-400", "Sec-WebSocket-Version: 8 (auth off)")
def sc_v8(ctx):
    return _xz(ctx, req(esp32_headers(version="8")), auth=False)


@scenario("ws14-duplicate-device-id-1011", "Device-Id sent twice (a0:..:56 and a0:..:57), auth on, valid token for :56")
def sc_dup_dev(ctx):
    return _xz(ctx, req(good_headers(extra=[("Device-Id", DEV_OTHER)])))


@scenario("ws14-duplicate-connection-500", "Connection: Upgrade sent twice, auth on, valid token")
def sc_dup_conn(ctx):
    return _xz(ctx, req(good_headers(extra=[("Connection", "Upgrade")])))


# 4: auth failures ----------------------------------------------------------------------
@scenario("ws14-auth-failed-no-token", "auth on, no Authorization header")
def sc_no_token(ctx):
    return _xz(ctx, req(esp32_headers(token=None)))


@scenario("ws14-auth-failed-expired-token", "auth on, well-formed token 40 days old")
def sc_expired(ctx):
    return _xz(ctx, req(esp32_headers(token=make_token(CID, DEV, ts=int(time.time()) - 40 * 86400))))


@scenario("ws14-auth-failed-token-other-device", f"auth on, fresh token signed for Device-Id {DEV_OTHER}, sent with {DEV}")
def sc_other(ctx):
    return _xz(ctx, req(esp32_headers(token=make_token(CID, DEV_OTHER))))


# 5 -------------------------------------------------------------------------------------
@scenario("ws14-missing-device-id", "auth off, no Device-Id header, no query")
def sc_no_dev(ctx):
    return _xz(ctx, req(esp32_headers(device=None)), auth=False)


@scenario("ws14-plain-get-server-is-running", "curl-like plain GET (no Upgrade/Connection), auth off")
def sc_plain(ctx):
    p = PORTS.get()
    data = (f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{p}\r\nUser-Agent: curl/7.88.1\r\n"
            "Accept: */*\r\n\r\n").encode()
    ctx.xiaozhi(p, auth=False)
    with ctx.capture(p):
        r = exchange(p, data)
    r["port"] = p
    return r


# extras: the two 14.2 differences the repo notes but never recorded --------------------
@scenario("ws14-tls-clienthello-silent-close", "wss:// (TLS ClientHello) sent to the plain ws port")
def sc_tls(ctx):
    return _xz(ctx, b"", tls=True, auth=False)


@scenario("ws14-nginx-http10-upstream-502",
          "nginx bare proxy_pass (HTTP/1.0 + Connection: close upstream, no Upgrade) -> 14.2 backend")
def sc_nginx(ctx):
    np_, bp = PORTS.get(), PORTS.get()
    ctx.xiaozhi(bp, auth=True)
    ctx.nginx(np_, bp)
    with ctx.capture(np_, bp):
        r = exchange(np_, req(good_headers()))
    r["port"] = np_
    r["backend_port"] = bp
    return r


# ============================================================ main
def server_log_summary(name: str) -> list[str]:
    f = LOGS / f"{name}.server.log"
    if not f.exists():
        return []
    keep = []
    for line in f.read_text(errors="replace").splitlines():
        if any(k in line for k in ("Error", "error", "failed", "listening", "websockets.exceptions",
                                   "handshake", "closed while")):
            keep.append(line.strip()[:300])
    return keep[-12:]


def analyze(names: list[str]) -> None:
    out = WORK / "analysis"
    out.mkdir(exist_ok=True)
    for n in names:
        pcap = OUT / f"{n}.pcap"
        for fmt, ext in (("text", "txt"), ("json", "json")):
            r = subprocess.run([sys.executable, "-m", "analyzer", "analyze", "--color", "never",
                                "--format", fmt, str(pcap)], capture_output=True, text=True,
                               cwd=str(HERE.parent.parent))
            (out / f"{n}.{ext}").write_text(r.stdout + (f"\n[stderr]\n{r.stderr}" if r.stderr.strip() else "")
                                           + f"\n[exit {r.returncode}]\n" if ext == "txt" else r.stdout)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--analyze", action="store_true")
    a = ap.parse_args()
    if a.list:
        for n, w, _ in SCENARIOS:
            print(f"{n}\t{w}")
        return 0
    if os.geteuid() != 0:
        raise SystemExit("needs root (tcpdump -i lo)")
    WORK.mkdir(parents=True, exist_ok=True)
    v = ensure_venv()
    LOGS.mkdir(exist_ok=True)
    only = {x for x in a.only.split(",") if x}
    resf = WORK / "results.json"
    results = json.loads(resf.read_text()) if (only and resf.exists()) else {}
    done = []
    for name, what, fn in SCENARIOS:
        if only and name not in only:
            continue
        ctx = Ctx(name)
        print(f"[{name}] {what}", flush=True)
        try:
            r = fn(ctx)
        except Exception:
            r = {"error": traceback.format_exc()}
        finally:
            ctx.stop()
        r["what"] = what
        r["server_log"] = server_log_summary(name)
        results[name] = r
        done.append(name)
        print(f"    status={r.get('status')} end={r.get('server_end')} t_end={r.get('t_server_end')} "
              f"frames={[(f.get('op'), f.get('payload', f.get('code'))) for f in r.get('frames', [])]}"
              f"{' ERROR ' + r['error'][-300:] if r.get('error') else ''}", flush=True)
    resf.write_text(json.dumps(results, indent=1, ensure_ascii=False))
    nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    tcpdump_v = subprocess.run(["tcpdump", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    pyv = subprocess.run([str(VPY), "-c", "import sys;print(sys.version.split()[0])"],
                         capture_output=True, text=True).stdout.strip()
    (OUT / "VERSIONS.txt").write_text(
        f"websockets: {v} (venv {VENV})\npython (server venv): {pyv}\n{tcpdump_v}\n{nginx_v}\n"
        f"kernel: {os.uname().release}\nrecorded: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n"
        f"server: {SERVER.name} (the same script as the websockets 17.4 captures)\n")
    if a.analyze:
        analyze(done)
    return 0


if __name__ == "__main__":
    sys.exit(main())
