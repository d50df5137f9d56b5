#!/usr/bin/env python3
"""Re-record every wsdiag peer scenario from scratch, on loopback only (127.0.0.1), ports 19000-19999.

Run as root with python3 (stdlib only):   python3 record_peers.py [SCENARIO_PREFIX ...]

It creates (if missing) a venv (Python frameworks) and a node folder (npm packages) in the work
folder, installs Debian's chromium if missing, writes every server/client source there, starts the servers,
and for each scenario: starts tcpdump on lo for the server port only, runs the client, stops
tcpdump with SIGINT ~0.5 s after the client finished.  Writes ../peers/NAME.pcap (captures/peers/),
the work files under $WSDIAG_RECORD_WORK (default /tmp/wsdiag-record-peers), results.json (what
each client saw) and ./versions.txt.  Kills every process it started.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

BASE = Path(os.environ.get("WSDIAG_RECORD_WORK", "/tmp/wsdiag-record-peers"))  # venv, node, sources, logs
OUT = Path(__file__).resolve().parent.parent / "peers"  # captures/peers/
SRC = BASE / "src"
VENV = BASE / "venv"
PY = str(VENV / "bin" / "python")
NODE_DIR = BASE / "node"
H = "127.0.0.1"

PIP_PKGS = ["tornado==6.6.1", "aiohttp==3.14.5", "uvicorn==0.54.0", "wsproto==1.3.2", "starlette==1.10.0",
            "hypercorn==0.18.0", "daphne==4.2.3", "channels==4.3.2", "Django==5.2.19", "Flask==3.1.3",
            "flask-sock==0.7.0", "simple-websocket==1.1.0", "websocket-client==1.9.2"]
NPM_PKGS = ["ws@8.23.0", "socket.io@4.8.4"]

# ---------------------------------------------------------------- sources
SOURCES = {}

SOURCES["node_servers.js"] = r"""
// One Node process, several ws / socket.io servers, one per port.
const fs = require('fs'), http = require('http'), https = require('https'), path = require('path');
const { WebSocketServer } = require('ws');
const H = '127.0.0.1';
function echo(ws) { ws.on('error', (e) => console.log('ws error:', e.message)); ws.on('message', (m, bin) => ws.send(m, { binary: bin })); }

// 19001: the plain documented server: path '/ws', handleProtocols picks 'chat' or none.
const a = new WebSocketServer({ host: H, port: 19001, path: '/ws',
  handleProtocols: (protocols, req) => protocols.has('chat') ? 'chat' : false });
a.on('connection', echo);

// 19002: verifyClient returning false (sync form) -> ws answers 401.
const b = new WebSocketServer({ host: H, port: 19002, verifyClient: (info) => false });
b.on('connection', echo);

// 19003: verifyClient async form: token in the query, else cb(false, 401, 'Unauthorized', {WWW-Authenticate}).
const c = new WebSocketServer({ host: H, port: 19003, verifyClient: (info, cb) => {
  const tok = new URL(info.req.url, 'http://x').searchParams.get('token');
  if (tok === 's3cret') cb(true); else cb(false, 401, 'Unauthorized', { 'WWW-Authenticate': 'Bearer realm="ws"' });
}});
c.on('connection', echo);

// 19004: verifyClient origin allow-list: cb(false, 403, 'Origin not allowed').
const d = new WebSocketServer({ host: H, port: 19004, verifyClient: (info, cb) => {
  cb(info.origin === 'https://app.example.com', 403, 'Origin not allowed');
}});
d.on('connection', echo);

// 19005: socket.io (engine.io) server.
const sioHttp = http.createServer((req, res) => { res.writeHead(404); res.end(); });
const { Server } = require('socket.io');
const io = new Server(sioHttp);
io.on('connection', (s) => s.on('msg', (m) => s.emit('msg', m)));
sioHttp.listen(19005, H);

// 19006: wss:// with a self-signed certificate (TLS 1.3 as negotiated by default).
const key = fs.readFileSync(path.join(__dirname, 'selfsigned.key')), cert = fs.readFileSync(path.join(__dirname, 'selfsigned.crt'));
const tls13 = https.createServer({ key, cert });
new WebSocketServer({ server: tls13 }).on('connection', echo);
tls13.listen(19006, H);

// 19007: the README's "client authentication" pattern: noServer + http 'upgrade' handler that
//        writes 'HTTP/1.1 401 Unauthorized\r\n\r\n' and destroys the socket.
const authHttp = http.createServer();
const e = new WebSocketServer({ noServer: true });
e.on('connection', echo);
authHttp.on('upgrade', (req, socket, head) => {
  if (req.headers['authorization'] !== 'Bearer s3cret') {
    socket.write('HTTP/1.1 401 Unauthorized\r\n\r\n');
    socket.destroy();
    return;
  }
  e.handleUpgrade(req, socket, head, (ws) => e.emit('connection', ws, req));
});
authHttp.listen(19007, H);

// 19008: wss:// self-signed, TLS 1.2 max (certificate visible on the wire).
const tls12 = https.createServer({ key, cert, maxVersion: 'TLSv1.2' });
new WebSocketServer({ server: tls12 }).on('connection', echo);
tls12.listen(19008, H);
// 19009: the same documented server on IPv6 loopback only.
const v6 = new WebSocketServer({ host: '::1', port: 19009, path: '/ws' });
v6.on('connection', echo);

// 19012: maxPayload 16 bytes: a bigger message gets close 1009 after the upgrade.
const mp = new WebSocketServer({ host: H, port: 19012, maxPayload: 16 });
mp.on('connection', echo);
console.log('node servers up');
"""

SOURCES["node_client.js"] = r"""
// node node_client.js URL [json options]   options: {protocols:[..], origin:'..', headers:{..}, rejectUnauthorized}
const WebSocket = require('ws');
const url = process.argv[2]; const o = JSON.parse(process.argv[3] || '{}');
const ws = new WebSocket(url, o.protocols || [], { origin: o.origin, headers: o.headers || {}, rejectUnauthorized: o.rejectUnauthorized !== false });
const log = (...a) => console.log('[node-ws-client]', ...a);
ws.on('unexpected-response', (req, res) => {
  let body = ''; res.on('data', (d) => body += d);
  res.on('end', () => { log('unexpected-response', res.statusCode, res.statusMessage, JSON.stringify(res.headers), JSON.stringify(body)); req.destroy(); });
});
ws.on('upgrade', (res) => log('upgrade', res.statusCode, JSON.stringify(res.headers)));
ws.on('open', () => { log('open protocol=' + JSON.stringify(ws.protocol)); ws.send('hello from node ws'); });
ws.on('message', (m) => { log('message', m.toString()); ws.close(1000, 'bye'); });
ws.on('error', (e) => log('error', e.message));
ws.on('close', (code, reason) => { log('close', code, reason.toString()); });
setTimeout(() => process.exit(0), 2500);
"""

SOURCES["wsc.py"] = r"""
# python wsc.py URL [json options]  -- the websocket-client package, as its README uses it.
import json, sys, websocket
url = sys.argv[1]; o = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
kw = {}
if 'origin' in o: kw['origin'] = o['origin']
if 'header' in o: kw['header'] = o['header']
if 'subprotocols' in o: kw['subprotocols'] = o['subprotocols']
if o.get('suppress_origin'): kw['suppress_origin'] = True
try:
    ws = websocket.create_connection(url, timeout=3, **kw)
    print('[websocket-client] open status', ws.getstatus(), 'subprotocol', ws.getsubprotocol())
    ws.send('hello from websocket-client')
    print('[websocket-client] recv', repr(ws.recv()))
    ws.close()
    print('[websocket-client] closed')
except Exception as e:
    print('[websocket-client] error', type(e).__name__, e)
"""

SOURCES["tornado_server.py"] = r"""
import asyncio, tornado.web, tornado.websocket
class Echo(tornado.websocket.WebSocketHandler):      # default check_origin
    def on_message(self, m): self.write_message(m)
class Auth(tornado.websocket.WebSocketHandler):    # accepts, then refuses in-band
    def open(self):
        if self.get_argument("token", "") != "s3cret":
            self.close(4001, "unauthorized")
    def on_message(self, m): self.write_message(m)
async def main():
    tornado.web.Application([(r"/ws", Echo), (r"/ws-auth", Auth)]).listen(19010, address="127.0.0.1")
    print("tornado up", flush=True); await asyncio.Event().wait()
asyncio.run(main())
"""

SOURCES["aiohttp_server.py"] = r"""
from aiohttp import web, WSMsgType
async def pump(ws):
    async for msg in ws:
        if msg.type == WSMsgType.TEXT: await ws.send_str(msg.data)
    return ws
async def ws_plain(request):
    ws = web.WebSocketResponse(); await ws.prepare(request); return await pump(ws)
async def ws_auth(request):
    if request.headers.get("Authorization") != "Bearer s3cret":
        raise web.HTTPUnauthorized()
    ws = web.WebSocketResponse(); await ws.prepare(request); return await pump(ws)
async def ws_admin(request):
    if request.query.get("role") != "admin":
        raise web.HTTPForbidden()
    ws = web.WebSocketResponse(); await ws.prepare(request); return await pump(ws)
app = web.Application()
app.add_routes([web.get("/ws", ws_plain), web.get("/ws-auth", ws_auth), web.get("/ws-admin", ws_admin)])
web.run_app(app, host="127.0.0.1", port=19020, print=lambda *a: print("aiohttp up", flush=True))
"""

SOURCES["starlette_app.py"] = r"""
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
async def ws(websocket):
    await websocket.accept()
    msg = await websocket.receive_text()
    await websocket.send_text(msg)
    await websocket.close()
async def deny(websocket):            # the app refuses before accept()
    await websocket.close(code=1008)
app = Starlette(routes=[WebSocketRoute("/ws", ws), WebSocketRoute("/ws-deny", deny)])
"""

SOURCES["djapp.py"] = r"""
import django
from django.conf import settings
settings.configure(
    DEBUG=False, SECRET_KEY="x" * 50, ALLOWED_HOSTS=["127.0.0.1", "localhost"], ROOT_URLCONF=__name__,
    INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes", "django.contrib.sessions", "channels"],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
    ASGI_APPLICATION="djapp.application", USE_TZ=True)
django.setup()
urlpatterns = []
from django.urls import path
from channels.routing import ProtocolTypeRouter, URLRouter
from channels.auth import AuthMiddlewareStack
from channels.security.websocket import AllowedHostsOriginValidator
from channels.generic.websocket import WebsocketConsumer
class Echo(WebsocketConsumer):
    def connect(self): self.accept()
    def receive(self, text_data=None, bytes_data=None): self.send(text_data=text_data)
class Private(WebsocketConsumer):
    def connect(self):
        if not self.scope["user"].is_authenticated:
            self.close()                 # rejected before accept
        else:
            self.accept()
application = ProtocolTypeRouter({"websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter([
    path("ws/echo/", Echo.as_asgi()), path("ws/private/", Private.as_asgi())])))})
"""

SOURCES["flask_sock_app.py"] = r"""
from flask import Flask
from flask_sock import Sock
app = Flask(__name__); sock = Sock(app)
@sock.route("/ws")
def echo(ws):
    ws.send(ws.receive())
if __name__ == "__main__":
    app.run(host="127.0.0.1", port=19050)
"""

SOURCES["page_server.py"] = r"""
# Serves the browser's page on 127.0.0.1:19060 and logs what the page's JS reports (/result?...).
import http.server, urllib.parse, sys
PAGE = '''<!doctype html><html><body><pre id=o></pre><script>
const q = new URLSearchParams(location.search), u = q.get('u'), pr = q.get('p');
const r = (s) => { document.getElementById('o').textContent += s + '\\n'; fetch('/result?' + encodeURIComponent(u + ' ' + s)); };
let ws;
try { ws = pr ? new WebSocket(u, pr.split(',')) : new WebSocket(u); } catch (e) { r('throw ' + e); }
ws.onopen = () => { r('open protocol=' + ws.protocol); ws.send('hello from chromium'); };
ws.onmessage = (e) => { r('message ' + e.data); ws.close(1000, 'bye'); };
ws.onerror = () => r('error event');
ws.onclose = (e) => r('close code=' + e.code + ' reason=' + e.reason + ' wasClean=' + e.wasClean);
</script></body></html>'''
class Hd(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        p = urllib.parse.urlsplit(self.path)
        if p.path == '/result':
            print('[chromium page]', urllib.parse.unquote(p.query), flush=True)
            self.send_response(204); self.end_headers(); return
        if p.path == '/favicon.ico':
            self.send_response(404); self.end_headers(); return
        b = PAGE.encode(); self.send_response(200)
        self.send_header('Content-Type', 'text/html'); self.send_header('Content-Length', str(len(b)))
        self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('127.0.0.1', 19060), Hd).serve_forever()
"""

SOURCES["raw_client.py"] = r"""
# python raw_client.py PORT  < request bytes on stdin;  prints the answer (for hand-made requests).
import socket, sys
req = sys.stdin.buffer.read().replace(b'\n', b'\r\n')
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=3)
s.sendall(req); out = b''
try:
    while True:
        d = s.recv(65536)
        if not d: break
        out += d
except socket.timeout: pass
s.close(); print('[raw] answer', out[:600])
"""


# ---------------------------------------------------------------- helpers
PROCS = []


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), text=True, capture_output=True, **kw)


def setup():
    SRC.mkdir(exist_ok=True)
    for name, text in SOURCES.items():
        (SRC / name).write_text(text.lstrip("\n"))
    if not (VENV / "bin" / "python").exists():
        subprocess.check_call([sys.executable, "-m", "venv", str(VENV)])
    subprocess.check_call([PY, "-m", "pip", "install", "-q", *PIP_PKGS])
    NODE_DIR.mkdir(exist_ok=True)
    if not (NODE_DIR / "node_modules" / "ws").exists() or not (NODE_DIR / "node_modules" / "socket.io").exists():
        if not (NODE_DIR / "package.json").exists():
            subprocess.check_call(["npm", "init", "-y"], cwd=NODE_DIR, stdout=subprocess.DEVNULL)
        subprocess.check_call(["npm", "install", *NPM_PKGS], cwd=NODE_DIR)
    for f in ("node_servers.js", "node_client.js"):
        shutil.copy(SRC / f, NODE_DIR / f)
    if not (NODE_DIR / "selfsigned.crt").exists():
        subprocess.check_call(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
                               "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                               "-keyout", str(NODE_DIR / "selfsigned.key"), "-out", str(NODE_DIR / "selfsigned.crt")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if not shutil.which("chromium"):
        subprocess.check_call("apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium",
                              shell=True)


def start(name, cmd, port, cwd=SRC, env=None):
    log = open(BASE / "logs" / f"{name}.log", "w")
    p = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
                         start_new_session=True)
    PROCS.append(p)
    for port in (port if isinstance(port, (list, tuple)) else [port]):
        host = "::1" if port == 19009 else H
        for _ in range(150):
            try:
                socket.create_connection((host, port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError(f"{name} did not listen on {port}")
    return p


def stop(p):
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def start_servers():
    (BASE / "logs").mkdir(exist_ok=True)
    start("node", ["node", "node_servers.js"], [19001, 19002, 19003, 19004, 19005, 19006, 19007, 19008, 19009, 19012],
          cwd=NODE_DIR)
    start("tornado", [PY, "tornado_server.py"], 19010)
    start("aiohttp", [PY, "aiohttp_server.py"], 19020)
    start("uvicorn-wsproto", [str(VENV / "bin/uvicorn"), "--ws", "wsproto", "--host", H, "--port", "19030",
                              "starlette_app:app"], 19030)
    start("hypercorn", [str(VENV / "bin/hypercorn"), "--bind", f"{H}:19031", "starlette_app:app"], 19031)
    start("daphne", [str(VENV / "bin/daphne"), "-b", H, "-p", "19040", "djapp:application"], 19040,
          env={"PYTHONPATH": str(SRC)})
    start("flask-sock", [PY, "flask_sock_app.py"], 19050)
    start("page", [PY, "page_server.py"], 19060)


class Capture:
    def __init__(self, name, ports):
        self.name, self.ports = name, ports

    def __enter__(self):
        f = " or ".join(f"tcp port {p}" for p in self.ports)
        self.err = open(BASE / "logs" / f"tcpdump-{self.name}.log", "w+")
        self.p = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-n", "-s", "0", "-w",
                                   str(OUT / f"{self.name}.pcap"), f], stderr=self.err, start_new_session=True)
        for _ in range(100):
            self.err.seek(0)
            if "listening on" in self.err.read():
                break
            time.sleep(0.05)
        time.sleep(0.2)
        return self

    def __exit__(self, *a):
        time.sleep(0.5)
        self.p.send_signal(signal.SIGINT)
        self.p.wait(5)


RESULTS = {}


def run_client(cmd, stdin=None, timeout=15, cwd=SRC):
    r = subprocess.run(cmd, cwd=cwd, input=stdin, text=True, capture_output=True, timeout=timeout)
    return (r.stdout + r.stderr).strip()


def node_client(url, **o):
    return run_client(["node", "node_client.js", url, json.dumps(o)], cwd=NODE_DIR)


def wsc(url, **o):
    return run_client([PY, "wsc.py", url, json.dumps(o)])


def curl(*args):
    return run_client(["curl", "-sS", "-i", "--max-time", "3", *args])


def raw(port, text):
    return run_client([PY, "raw_client.py", str(port)], stdin=text)


def chromium(url, wait=6.0, protocols=None):
    ud = tempfile.mkdtemp(prefix="chromium-ud-", dir="/tmp")
    page = f"http://{H}:19060/?u=" + urllib.parse.quote(url, safe="") + (
        "&p=" + urllib.parse.quote(",".join(protocols), safe="") if protocols else "")
    log = open(BASE / "logs" / "page.log")
    log.seek(0, 2)
    p = subprocess.Popen(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                          "--disable-background-networking", "--disable-component-update", "--disable-sync",
                          "--disable-extensions", "--disable-default-apps", "--no-default-browser-check",
                          "--metrics-recording-only", "--disable-features=MediaRouter,OptimizationHints,Translate",
                          f"--user-data-dir={ud}", page],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    PROCS.append(p)
    time.sleep(wait)
    stop(p)
    shutil.rmtree(ud, ignore_errors=True)
    return log.read().strip()


# ---------------------------------------------------------------- scenarios: name, ports, client
CURL_UPGRADE = ["-N", "-H", "Connection: Upgrade", "-H", "Upgrade: websocket"]  # the classic blog recipe
SCENARIOS = [
    # Node ws
    ("node-ws-accepted-101", [19001], lambda: node_client(f"ws://{H}:19001/ws", protocols=["chat"])),
    ("node-ws-path-mismatch-400", [19001], lambda: node_client(f"ws://{H}:19001/socket")),
    ("node-ws-subprotocol-none-chosen", [19001], lambda: node_client(f"ws://{H}:19001/ws", protocols=["v2.chat"])),
    ("node-ws-missing-key-400-curl", [19001], lambda: curl(*CURL_UPGRADE, f"http://{H}:19001/ws")),
    ("node-ws-bad-version-400", [19001], lambda: wsc(f"ws://{H}:19001/ws", header={"Sec-WebSocket-Version": "12"})),
    ("node-ws-verifyclient-false-401", [19002], lambda: node_client(f"ws://{H}:19002/")),
    ("node-ws-verifyclient-401", [19003], lambda: node_client(f"ws://{H}:19003/?token=wrong")),
    ("node-ws-verifyclient-origin-403", [19004], lambda: node_client(f"ws://{H}:19004/", origin="https://evil.example.com")),
    ("node-ws-upgrade-handler-401-destroy", [19007], lambda: node_client(f"ws://{H}:19007/")),
    ("node-ws-ipv6-accepted-101", [19009], lambda: node_client("ws://[::1]:19009/ws")),
    ("node-ws-ipv6-path-mismatch-400", [19009], lambda: node_client("ws://[::1]:19009/chat")),
    ("node-ws-maxpayload-1009", [19012], lambda: node_client(f"ws://{H}:19012/")),
    ("node-ws-client-wss-selfsigned-tls12", [19008], lambda: node_client(f"wss://{H}:19008/")),
    ("node-socketio-plain-ws-400", [19005], lambda: node_client(f"ws://{H}:19005/socket.io/")),
    ("node-socketio-eio4-101", [19005], lambda: node_client(f"ws://{H}:19005/socket.io/?EIO=4&transport=websocket")),
    # tornado
    ("tornado-accepted-101", [19010], lambda: wsc(f"ws://{H}:19010/ws")),
    ("tornado-origin-rejected-403", [19010], lambda: wsc(f"ws://{H}:19010/ws", origin="http://evil.example.com")),
    ("tornado-plain-get-400", [19010], lambda: curl(f"http://{H}:19010/ws")),
    ("tornado-wrong-path-404", [19010], lambda: wsc(f"ws://{H}:19010/websocket")),
    ("tornado-close-4001-after-open", [19010], lambda: wsc(f"ws://{H}:19010/ws-auth?token=wrong")),
    ("tornado-curl-no-version-426", [19010], lambda: curl(*CURL_UPGRADE, f"http://{H}:19010/ws")),
    # aiohttp
    ("aiohttp-accepted-101", [19020], lambda: wsc(f"ws://{H}:19020/ws")),
    ("aiohttp-plain-get-400", [19020], lambda: curl(f"http://{H}:19020/ws")),
    ("aiohttp-bad-version-400", [19020], lambda: wsc(f"ws://{H}:19020/ws", header={"Sec-WebSocket-Version": "12"})),
    ("aiohttp-unauthorized-401", [19020], lambda: wsc(f"ws://{H}:19020/ws-auth")),
    ("aiohttp-forbidden-403", [19020], lambda: wsc(f"ws://{H}:19020/ws-admin?role=guest")),
    ("aiohttp-wrong-path-404", [19020], lambda: wsc(f"ws://{H}:19020/socket")),
    # uvicorn --ws wsproto
    ("uvicorn-wsproto-accepted-101", [19030], lambda: wsc(f"ws://{H}:19030/ws")),
    ("uvicorn-wsproto-close-before-accept-403", [19030], lambda: wsc(f"ws://{H}:19030/ws-deny")),
    ("uvicorn-wsproto-wrong-path-403", [19030], lambda: wsc(f"ws://{H}:19030/socket")),
    ("uvicorn-wsproto-bad-version", [19030], lambda: wsc(f"ws://{H}:19030/ws", header={"Sec-WebSocket-Version": "12"})),
    # hypercorn
    ("hypercorn-accepted-101", [19031], lambda: wsc(f"ws://{H}:19031/ws")),
    ("hypercorn-close-before-accept-403", [19031], lambda: wsc(f"ws://{H}:19031/ws-deny")),
    ("hypercorn-wrong-path", [19031], lambda: wsc(f"ws://{H}:19031/socket")),
    # daphne / Django Channels
    ("daphne-accepted-101", [19040], lambda: wsc(f"ws://{H}:19040/ws/echo/")),
    ("daphne-origin-rejected-403", [19040], lambda: wsc(f"ws://{H}:19040/ws/echo/", origin="http://evil.example.com")),
    ("daphne-auth-close-403", [19040], lambda: wsc(f"ws://{H}:19040/ws/private/")),
    ("daphne-no-origin-403", [19040], lambda: wsc(f"ws://{H}:19040/ws/echo/", suppress_origin=True)),
    ("daphne-wrong-path", [19040], lambda: wsc(f"ws://{H}:19040/ws/nope/")),
    # Flask-Sock (simple-websocket under werkzeug)
    ("flask-sock-accepted-101", [19050], lambda: wsc(f"ws://{H}:19050/ws")),
    ("flask-sock-plain-get", [19050], lambda: curl(f"http://{H}:19050/ws")),
    # headless Chromium (only the WebSocket server's port is captured)
    ("chromium-accepted-101", [19001], lambda: chromium(f"ws://{H}:19001/ws")),
    ("chromium-uvicorn-wsproto-accepted-101", [19030], lambda: chromium(f"ws://{H}:19030/ws")),
    ("chromium-aiohttp-accepted-101", [19020], lambda: chromium(f"ws://{H}:19020/ws")),
    ("chromium-origin-rejected-403", [19010], lambda: chromium(f"ws://{H}:19010/ws")),
    ("chromium-token-needed-401", [19020], lambda: chromium(f"ws://{H}:19020/ws-auth")),
    ("chromium-token-in-query-401", [19003], lambda: chromium(f"ws://{H}:19003/?token=wrong")),
    ("chromium-subprotocol-token-none-chosen", [19001],
     lambda: chromium(f"ws://{H}:19001/ws", protocols=["access_token", "eyJhbGciOiJIUzI1NiJ9.e30.abc"])),
    ("chromium-wss-selfsigned-tls13", [19006], lambda: chromium(f"wss://{H}:19006/")),
    ("chromium-wss-selfsigned-tls12", [19008], lambda: chromium(f"wss://{H}:19008/")),
]


def versions():
    lines = []
    for cmd in (["node", "--version"], ["curl", "--version"], ["chromium", "--version"], ["tcpdump", "--version"],
                [PY, "--version"]):
        try:
            r = sh(cmd)
            lines.append(cmd[0] + ": " + (r.stdout.strip() or r.stderr.strip()).splitlines()[0])
        except Exception as e:  # noqa: BLE001
            lines.append(f"{cmd[0]}: {e}")
    lines.append("curl protocols: " + [x for x in sh(["curl", "--version"]).stdout.splitlines() if x.startswith("Protocols")][0])
    frz = sh([PY, "-m", "pip", "freeze"]).stdout.split()
    lines.append("pip (venv): " + " ".join(x for x in frz if x.split("==")[0].lower() in {p.split("==")[0].lower() for p in PIP_PKGS}
                                          or x.lower().startswith(("twisted", "autobahn", "h11", "h2=", "websockets"))))
    for pkg in ("ws", "socket.io", "engine.io"):
        v = json.loads((NODE_DIR / "node_modules" / pkg / "package.json").read_text())["version"]
        lines.append(f"npm: {pkg}@{v}")
    (OUT / "VERSIONS.txt").write_text("\n".join(lines) + "\n")


def main():
    if os.geteuid() != 0:
        sys.exit("run as root (tcpdump)")
    only = sys.argv[1:]
    BASE.mkdir(parents=True, exist_ok=True)
    setup()
    versions()
    try:
        start_servers()
        for name, ports, client in SCENARIOS:
            if only and not any(name.startswith(o) for o in only):
                continue
            with Capture(name, ports):
                out = client()
            RESULTS[name] = out
            print(f"== {name}\n{out}\n", flush=True)
    finally:
        for p in reversed(PROCS):
            stop(p)
        old = json.loads((BASE / "results.json").read_text()) if (BASE / "results.json").exists() else {}
        old.update(RESULTS)
        (BASE / "results.json").write_text(json.dumps(old, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
