#!/usr/bin/env python3
"""Re-record every wss:// (WebSocket over TLS) scenario of the TLS sweep from scratch.

Run as root (tcpdump needs it):  python3 captures/record/record_tls.py [--only SUBSTR ...] [--list]

Everything stays on loopback (127.0.0.1) and on ports 17000-17999.  Servers: nginx, haproxy,
caddy in front of wsdiag's echo backend (captures/record/servers.py ws-quiet).  Clients:
Python websockets (sync client, ssl.SSLContext.keylog_filename), Node `ws` (node --tls-keylog),
headless Chromium (SSLKEYLOGFILE).  Certificates are made here with `cryptography` (own CA,
valid / expired / wrong host / self-signed / unknown CA server certificates, a client cert).

Output: captures/wss/<name>.pcap (+ <name>.keylog when the client wrote keys), VERSIONS.txt;
what each client itself reported goes to $WSDIAG_RECORD_WORK/<name>.client.txt.
Needs: nginx(-light), haproxy, caddy, chromium, libnss3-tools (certutil), tcpdump, node + `ws`
in $WSDIAG_RECORD_WORK/node (npm install ws), python3
with websockets and cryptography.
"""
from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "wss"  # captures/wss/: pcaps, key logs
WORK = Path(os.environ.get("WSDIAG_RECORD_WORK", "/tmp/wsdiag-record-tls"))  # configs, certs, node
BUILD = WORK / "build"
SERVERS_PY = str(Path(__file__).resolve().parent / "servers.py")
NODE_DIR = WORK / "node"

# ---- ports (all 17000-17999) ------------------------------------------------------------------
P_PAGE = 17001          # plain HTTP page server for Chromium (+ /log beacon)
P_BACKEND = 17010       # ws echo backend
P_NGX_PLAIN = 17080     # nginx plain ws proxy
P_NGX_GOOD = 17443      # nginx TLS 1.2+1.3, valid cert; /deny -> 403, /auth -> 401
P_NGX_EXPIRED = 17444
P_NGX_WRONGHOST = 17445
P_NGX_SELFSIGNED = 17446
P_NGX_UNKNOWNCA = 17447
P_NGX_MTLS = 17448
P_NGX_TLS13ONLY = 17449
P_NGX_NOCIPHER = 17450
P_HAP_TLS = 17500
P_HAP_PLAIN = 17501
P_CADDY = 17600
P_CADDY_HTTP = 17680
P_DOWN = 17999          # nothing listens here (Caddy's dead upstream)

PROCS: list[subprocess.Popen] = []


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ---- certificates -----------------------------------------------------------------------------
def make_certs(d: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    d.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)

    def key():
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem, k, c):
        (d / f"{stem}.key").write_bytes(k.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.TraditionalOpenSSL,
                                                         serialization.NoEncryption()))
        (d / f"{stem}.pem").write_bytes(c.public_bytes(serialization.Encoding.PEM))

    def ca(cn):
        k = key()
        c = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn))
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
             .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
             .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(k.public_key()), critical=False)
             .sign(k, hashes.SHA256()))
        return k, c

    def leaf(cn, dns, issuer, nb, na, client=False, ips=("127.0.0.1",)):
        k = key()
        ik, ic = issuer if issuer else (k, None)
        san = [x509.DNSName(n) for n in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        b = (x509.CertificateBuilder().subject_name(name(cn))
             .issuer_name(ic.subject if ic else name(cn)).public_key(k.public_key())
             .serial_number(x509.random_serial_number()).not_valid_before(nb).not_valid_after(na)
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                                   else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if ic is not None:
            b = b.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ic.public_key()), critical=False)
        return k, b.sign(ik, hashes.SHA256())

    cak, cac = ca("wsdiag sweep CA")
    write("ca", cak, cac)
    otherk, otherc = ca("Some Other CA")
    write("otherca", otherk, otherc)
    good = (now - dt.timedelta(days=1), now + dt.timedelta(days=90))
    write("good", *leaf("localhost", ["localhost"], (cak, cac), *good))
    write("expired", *leaf("localhost", ["localhost"], (cak, cac),
                           now - dt.timedelta(days=400), now - dt.timedelta(days=35)))
    write("wronghost", *leaf("wrong.example", ["wrong.example"], (cak, cac), *good, ips=()))
    write("selfsigned", *leaf("localhost", ["localhost"], None, *good))
    write("unknownca", *leaf("localhost", ["localhost"], (otherk, otherc), *good))
    write("client", *leaf("device-1", [], (cak, cac), *good, client=True, ips=()))
    for stem in ("good", "expired", "wronghost", "selfsigned", "unknownca"):
        # chain files (leaf + issuer) for nginx / haproxy
        chain = (d / f"{stem}.pem").read_bytes()
        if stem in ("good", "expired", "wronghost"):
            chain += (d / "ca.pem").read_bytes()
        elif stem == "unknownca":
            chain += (d / "otherca.pem").read_bytes()
        (d / f"{stem}.chain.pem").write_bytes(chain)
        (d / f"{stem}.haproxy.pem").write_bytes(chain + (d / f"{stem}.key").read_bytes())


# ---- server configs ---------------------------------------------------------------------------
def nginx_conf(d: Path) -> Path:
    c = d / "certs"
    proxy = f"""
            proxy_pass http://127.0.0.1:{P_BACKEND};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection "upgrade";
            proxy_set_header Host $host;"""
    locs = f"""
        location /deny {{ deny all; }}
        location /auth {{ auth_basic "wsdiag sweep"; auth_basic_user_file {d}/htpasswd; {proxy} }}
        location / {{ {proxy} }}"""

    def tls_server(port, stem, extra=""):
        return f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name localhost;
        ssl_certificate {c}/{stem}.chain.pem;
        ssl_certificate_key {c}/{stem}.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        {extra}
        {locs}
    }}"""

    conf = f"""
user root;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {d}/nginx-access.log;
    client_body_temp_path {d}/ngx-body; proxy_temp_path {d}/ngx-proxy;
    fastcgi_temp_path {d}/ngx-fcgi; uwsgi_temp_path {d}/ngx-uwsgi; scgi_temp_path {d}/ngx-scgi;
    server {{
        listen 127.0.0.1:{P_NGX_PLAIN};
        server_name localhost;
        {locs}
    }}
    {tls_server(P_NGX_GOOD, "good")}
    {tls_server(P_NGX_EXPIRED, "expired")}
    {tls_server(P_NGX_WRONGHOST, "wronghost")}
    {tls_server(P_NGX_SELFSIGNED, "selfsigned")}
    {tls_server(P_NGX_UNKNOWNCA, "unknownca")}
    {tls_server(P_NGX_MTLS, "good", f"ssl_client_certificate {c}/ca.pem; ssl_verify_client on;")}
    {tls_server(P_NGX_TLS13ONLY, "good").replace("ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1.3;")}
    {tls_server(P_NGX_NOCIPHER, "good", "ssl_ciphers ECDHE-RSA-CHACHA20-POLY1305;").replace(
        "ssl_protocols TLSv1.2 TLSv1.3;", "ssl_protocols TLSv1.2;")}
}}
"""
    p = d / "nginx.conf"
    p.write_text(conf)
    # user "ws" password "secret" (apr1 hash made with openssl)
    h = subprocess.run(["openssl", "passwd", "-apr1", "secret"], capture_output=True, text=True).stdout.strip()
    (d / "htpasswd").write_text(f"ws:{h}\n")
    return p


def haproxy_conf(d: Path) -> Path:
    p = d / "haproxy.cfg"
    p.write_text(textwrap.dedent(f"""
        global
            log stderr local0 info
        defaults
            mode http
            log global
            option httplog
            timeout connect 5s
            timeout client 30s
            timeout server 30s
            timeout tunnel 60s
        frontend fe_tls
            bind 127.0.0.1:{P_HAP_TLS} ssl crt {d}/certs/good.haproxy.pem
            default_backend be_ws
        frontend fe_plain
            bind 127.0.0.1:{P_HAP_PLAIN}
            default_backend be_ws
        backend be_ws
            server ws1 127.0.0.1:{P_BACKEND}
    """))
    return p


def caddy_conf(d: Path) -> Path:
    p = d / "Caddyfile"
    p.write_text(textwrap.dedent(f"""
        {{
            admin off
            auto_https disable_redirects
            http_port {P_CADDY_HTTP}
            https_port {P_CADDY}
            storage file_system {d}/caddy-data
            servers {{
                protocols h1 h2
            }}
        }}
        https://localhost:{P_CADDY} {{
            bind 127.0.0.1
            tls {d}/certs/good.chain.pem {d}/certs/good.key
            handle /page.html {{
                root * {d}/www
                file_server
            }}
            handle /deny* {{
                respond "forbidden by caddy" 403
            }}
            handle /down* {{
                reverse_proxy 127.0.0.1:{P_DOWN}
            }}
            handle {{
                reverse_proxy 127.0.0.1:{P_BACKEND}
            }}
        }}
    """))
    return p


# The page Chromium loads: opens the WebSocket named in ?ws=..., beacons the outcome to
# http://127.0.0.1:P_PAGE/log?... (the page server records it as the client's own report).
PAGE_HTML = (
    "<!doctype html><title>wss sweep</title><script>"
    "const q=new URLSearchParams(location.search);const u=q.get('ws');"
    "function b(m){console.log('WSSWEEP '+m);new Image().src='http://127.0.0.1:" + str(P_PAGE) + "/log?'+encodeURIComponent(m);}"
    "b('start '+u);let w;try{w=new WebSocket(u);}catch(e){b('throw '+e);}"
    "w.onopen=()=>{b('open protocol='+w.protocol+' ext='+w.extensions);w.send('hello');};"
    "w.onmessage=e=>{b('message '+e.data);w.close(1000,'bye');};"
    "w.onerror=()=>b('error');"
    "w.onclose=e=>b('close code='+e.code+' reason='+e.reason+' clean='+e.wasClean);"
    "</script>"
)

PAGE_SERVER = r'''
import http.server, sys, urllib.parse
PAGE = sys.argv[2].encode()
LOG = sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.startswith("/log?"):
            with open(LOG, "a") as f:
                f.write(urllib.parse.unquote(self.path[5:]) + "\n")
            self.send_response(204); self.end_headers(); return
        self.send_response(200); self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE))); self.end_headers(); self.wfile.write(PAGE)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
'''

PY_CLIENT = r'''
import json, ssl, sys
from websockets.sync.client import connect
a = json.loads(sys.argv[1])
ctx = None
if a["url"].startswith("wss://"):
    ctx = ssl.create_default_context(cafile=a.get("ca"))
    if a.get("keylog"): ctx.keylog_filename = a["keylog"]
    if a.get("maxv") == "1.2": ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if a.get("ciphers"): ctx.set_ciphers(a["ciphers"])
    if a.get("cert"): ctx.load_cert_chain(a["cert"], a["key"])
kw = {"open_timeout": 5}
if ctx is not None:
    kw["ssl"] = ctx; kw["server_hostname"] = a.get("sni", "localhost")
if a.get("headers"): kw["additional_headers"] = a["headers"]
try:
    with connect(a["url"], **kw) as ws:
        print("open", ws.response.status_code, flush=True)
        ws.send("hello"); print("recv", ws.recv(timeout=3), flush=True)
    print("closed cleanly", flush=True)
except Exception as e:
    print("error", type(e).__name__, e, flush=True)
'''

NODE_CLIENT = r'''
const WebSocket = require(process.env.WS_MODULE);
const fs = require('fs');
const a = JSON.parse(process.argv[2]);
const o = {handshakeTimeout: 5000};
if (a.ca) o.ca = fs.readFileSync(a.ca);
if (a.sni) o.servername = a.sni;
if (a.maxv) o.maxVersion = a.maxv;
if (a.headers) o.headers = a.headers;
const ws = new WebSocket(a.url, o);
ws.on('open', () => { console.log('open'); ws.send('hello'); });
ws.on('message', m => { console.log('recv', m.toString()); ws.close(1000, 'bye'); });
ws.on('unexpected-response', (req, res) => { console.log('unexpected-response', res.statusCode); req.destroy(); process.exit(0); });
ws.on('error', e => console.log('error', e.code || '', e.message));
ws.on('close', (c, r) => { console.log('close', c, r.toString()); process.exit(0); });
setTimeout(() => { console.log('timeout'); process.exit(3); }, 6000);
'''


# ---- process helpers ----------------------------------------------------------------------------
def start(cmd, name, env=None, cwd=None):
    f = open(BUILD / f"{name}.log", "ab")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    PROCS.append(p)
    return p


def stop(p, sig=signal.SIGTERM, wait=5):
    if p.poll() is None:
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            pass
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def wait_port(port, timeout=10.0):
    t = time.time() + timeout
    while time.time() < t:
        try:
            socket.create_connection(("127.0.0.1", port), 0.3).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open")


class Capture:
    def __init__(self, name, ports):
        self.pcap = OUT / f"{name}.pcap"
        flt = " or ".join(f"tcp port {p}" for p in ports)
        self.p = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-n", "-s", "0",
                                   "-w", str(self.pcap), flt],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        # wait for "listening on"
        t = time.time() + 5
        while time.time() < t:
            line = self.p.stderr.readline()
            if b"listening on" in line or not line:
                break
        time.sleep(0.3)

    def close(self):
        time.sleep(0.5)
        self.p.send_signal(signal.SIGINT)
        self.p.wait(5)


# ---- clients ------------------------------------------------------------------------------------
def run_python(args):
    r = subprocess.run([sys.executable, "-c", PY_CLIENT, json.dumps(args)], capture_output=True, text=True, timeout=20)
    return (r.stdout + r.stderr).strip()


def run_node(args, keylog):
    env = dict(os.environ, WS_MODULE=str(NODE_DIR / "node_modules" / "ws"))
    cmd = ["node"] + ([f"--tls-keylog={keylog}"] if keylog else []) + [str(BUILD / "client.js"), json.dumps(args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=20, env=env)
    return (r.stdout + r.stderr).strip()


def run_chromium(page_url, keylog, trust_ca=True, ignore_cert=False, seconds=6.0):
    home = Path(tempfile.mkdtemp(prefix="chr-home-", dir=BUILD))
    udd = home / "udd"
    if trust_ca:
        nss = home / ".pki" / "nssdb"
        nss.mkdir(parents=True)
        subprocess.run(["certutil", "-d", f"sql:{nss}", "-N", "--empty-password"], check=True)
        subprocess.run(["certutil", "-d", f"sql:{nss}", "-A", "-t", "C,,", "-n", "sweep-ca",
                        "-i", str(BUILD / "certs" / "ca.pem")], check=True)
    beacon = BUILD / "beacon.log"
    beacon.write_text("")
    env = dict(os.environ, HOME=str(home))
    if keylog:
        env["SSLKEYLOGFILE"] = str(keylog)
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--disable-features=OptimizationHints,MediaRouter,Translate,DialMediaRouteProvider",
           # never resolve any name to anything but loopback
           "--host-resolver-rules=MAP * 127.0.0.1", "--enable-logging=stderr", "--v=0",
           f"--user-data-dir={udd}"]
    if ignore_cert:
        cmd.append("--ignore-certificate-errors")
    cmd.append(page_url)
    p = start(cmd, "chromium", env=env)
    t = time.time() + seconds
    while time.time() < t:
        if "close code=" in beacon.read_text():
            time.sleep(0.5)
            break
        time.sleep(0.2)
    stop(p)
    console = [l.split("WSSWEEP ", 1)[1].split('"')[0] for l in (BUILD / "chromium.log").read_text(errors="replace").splitlines()
               if "WSSWEEP " in l]
    (BUILD / "chromium.log").rename(BUILD / f"chromium-{time.time():.0f}.log")
    shutil.rmtree(home, ignore_errors=True)
    got = beacon.read_text().strip()
    return got if got else "console: " + " | ".join(console)


# ---- scenarios ----------------------------------------------------------------------------------
def S(name, client, url, ports, **kw):
    return dict(name=name, client=client, url=url, ports=ports, **kw)


CA = str(BUILD / "certs" / "ca.pem")
NGX_BE = [P_BACKEND]


def scenarios():
    L = []
    B = P_BACKEND
    # 1. good wss through nginx TLS termination
    L += [S("nginx-good-python-tls13", "python", f"wss://localhost:{P_NGX_GOOD}/", [P_NGX_GOOD, B]),
          S("nginx-good-python-tls12", "python", f"wss://localhost:{P_NGX_GOOD}/", [P_NGX_GOOD, B], maxv="1.2"),
          S("nginx-good-node-tls13", "node", f"wss://127.0.0.1:{P_NGX_GOOD}/", [P_NGX_GOOD, B]),
          S("nginx-good-chromium-tls13", "chromium", f"wss://localhost:{P_NGX_GOOD}/", [P_NGX_GOOD, B])]
    # 2. certificate problems with strict clients
    for cert, port in (("expired", P_NGX_EXPIRED), ("wronghost", P_NGX_WRONGHOST),
                       ("selfsigned", P_NGX_SELFSIGNED), ("unknownca", P_NGX_UNKNOWNCA)):
        L += [S(f"nginx-{cert}-cert-python-tls13", "python", f"wss://localhost:{port}/", [port, B]),
              S(f"nginx-{cert}-cert-python-tls12", "python", f"wss://localhost:{port}/", [port, B], maxv="1.2"),
              S(f"nginx-{cert}-cert-node-tls13", "node", f"wss://127.0.0.1:{port}/", [port, B]),
              S(f"nginx-{cert}-cert-chromium-tls13", "chromium", f"wss://localhost:{port}/", [port, B])]
    # 3. mutual TLS, client without certificate (and one with, for contrast)
    L += [S("nginx-mtls-nocert-python-tls13", "python", f"wss://localhost:{P_NGX_MTLS}/", [P_NGX_MTLS, B]),
          S("nginx-mtls-nocert-python-tls12", "python", f"wss://localhost:{P_NGX_MTLS}/", [P_NGX_MTLS, B], maxv="1.2"),
          S("nginx-mtls-nocert-chromium-tls13", "chromium", f"wss://localhost:{P_NGX_MTLS}/", [P_NGX_MTLS, B]),
          S("nginx-mtls-withcert-python-tls13", "python", f"wss://localhost:{P_NGX_MTLS}/", [P_NGX_MTLS, B],
            cert=str(BUILD / "certs" / "client.pem"), key=str(BUILD / "certs" / "client.key"))]
    # 4. version mismatch, no shared cipher
    L += [S("nginx-tls13only-python-max12", "python", f"wss://localhost:{P_NGX_TLS13ONLY}/", [P_NGX_TLS13ONLY, B], maxv="1.2"),
          S("nginx-tls13only-node-max12", "node", f"wss://127.0.0.1:{P_NGX_TLS13ONLY}/", [P_NGX_TLS13ONLY, B], maxv="TLSv1.2"),
          S("nginx-nosharedcipher-python-tls12", "python", f"wss://localhost:{P_NGX_NOCIPHER}/", [P_NGX_NOCIPHER, B],
            maxv="1.2", ciphers="ECDHE-RSA-AES128-GCM-SHA256")]
    # 5. scheme / port confusion
    L += [S("nginx-wss-to-plain-port-python", "python", f"wss://localhost:{P_NGX_PLAIN}/", [P_NGX_PLAIN, B]),
          S("nginx-ws-to-tls-port-python", "python", f"ws://localhost:{P_NGX_GOOD}/", [P_NGX_GOOD, B]),
          S("nginx-wss-to-plain-port-chromium", "chromium", f"wss://localhost:{P_NGX_PLAIN}/", [P_NGX_PLAIN, B]),
          S("haproxy-good-python-tls13", "python", f"wss://localhost:{P_HAP_TLS}/", [P_HAP_TLS, B]),
          S("haproxy-wss-to-plain-port-python", "python", f"wss://localhost:{P_HAP_PLAIN}/", [P_HAP_PLAIN, B]),
          S("haproxy-ws-to-tls-port-python", "python", f"ws://localhost:{P_HAP_TLS}/", [P_HAP_TLS, B]),
          S("haproxy-ws-to-tls-port-node", "node", f"ws://127.0.0.1:{P_HAP_TLS}/", [P_HAP_TLS, B])]
    # 6. Chromium -> Caddy (HTTP/2 page, WebSocket)
    L += [S("caddy-good-chromium-h2", "chromium-caddy", f"wss://localhost:{P_CADDY}/ws", [P_CADDY, B]),
          S("caddy-deny-403-chromium-h2", "chromium-caddy", f"wss://localhost:{P_CADDY}/deny", [P_CADDY, B]),
          S("caddy-backend-down-502-chromium-h2", "chromium-caddy", f"wss://localhost:{P_CADDY}/down", [P_CADDY, P_DOWN]),
          S("caddy-good-python-tls13", "python", f"wss://localhost:{P_CADDY}/ws", [P_CADDY, B]),
          S("caddy-deny-403-python-tls13", "python", f"wss://localhost:{P_CADDY}/deny", [P_CADDY, B])]
    # 7. 403 / 401 inside TLS vs plain
    L += [S("nginx-deny-403-python-tls13", "python", f"wss://localhost:{P_NGX_GOOD}/deny", [P_NGX_GOOD, B]),
          S("nginx-deny-403-python-plain", "python", f"ws://localhost:{P_NGX_PLAIN}/deny", [P_NGX_PLAIN, B]),
          S("nginx-auth-401-python-tls13", "python", f"wss://localhost:{P_NGX_GOOD}/auth", [P_NGX_GOOD, B]),
          S("nginx-auth-401-python-plain", "python", f"ws://localhost:{P_NGX_PLAIN}/auth", [P_NGX_PLAIN, B]),
          S("nginx-auth-401-node-tls13", "node", f"wss://127.0.0.1:{P_NGX_GOOD}/auth", [P_NGX_GOOD, B]),
          S("nginx-deny-403-chromium-tls13", "chromium", f"wss://localhost:{P_NGX_GOOD}/deny", [P_NGX_GOOD, B])]
    return L


def record(s):
    name = s["name"]
    keylog = OUT / f"{name}.keylog"
    for f in (keylog, OUT / f"{name}.pcap"):
        f.unlink(missing_ok=True)
    tls = s["url"].startswith("wss://")
    cap = Capture(name, s["ports"])
    try:
        if s["client"] == "python":
            a = {"url": s["url"], "ca": CA, "sni": "localhost"}
            if tls:
                a["keylog"] = str(keylog)
            for k in ("maxv", "ciphers", "cert", "key"):
                if k in s:
                    a[k] = s[k]
            out = run_python(a)
        elif s["client"] == "node":
            a = {"url": s["url"], "ca": CA, "sni": "localhost"}
            if "maxv" in s:
                a["maxv"] = s["maxv"]
            out = run_node(a, keylog if tls else None)
        elif s["client"] == "chromium":
            from urllib.parse import quote
            out = run_chromium(f"http://127.0.0.1:{P_PAGE}/page.html?ws={quote(s['url'], safe='')}", keylog)
        elif s["client"] == "chromium-caddy":
            from urllib.parse import quote
            out = run_chromium(f"https://localhost:{P_CADDY}/page.html?ws={quote(s['url'], safe='')}", keylog)
        else:
            raise ValueError(s["client"])
    finally:
        cap.close()
    if keylog.exists() and keylog.stat().st_size == 0:
        keylog.unlink()
    (WORK / f"{name}.client.txt").write_text(out + "\n")
    log(f"{name}: {out.replace(chr(10), ' | ')}")


def versions():
    def v(cmd):
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception as e:  # noqa: BLE001
            return f"n/a ({e})"
    import cryptography
    import websockets
    lines = [
        f"python: {sys.version.split()[0]}",
        f"websockets: {websockets.__version__}",
        f"cryptography: {cryptography.__version__}",
        f"openssl (python ssl): {__import__('ssl').OPENSSL_VERSION}",
        f"openssl cli: {v(['openssl', 'version'])}",
        f"nginx: {v(['nginx', '-v'])}",
        f"haproxy: {v(['haproxy', '-v'])}",
        f"caddy: {v(['caddy', 'version'])}",
        f"chromium: {v(['chromium', '--version'])}",
        f"node: {v(['node', '--version'])}",
        f"node openssl: {v(['node', '-p', 'process.versions.openssl'])}",
        f"ws (npm): {json.loads((NODE_DIR / 'node_modules/ws/package.json').read_text())['version']}",
        f"tcpdump: {v(['tcpdump', '--version'])}",
        f"tshark: {v(['tshark', '--version'])}",
        f"kernel: {os.uname().release}",
    ]
    (OUT / "VERSIONS.txt").write_text("\n".join(lines) + "\n")
    log("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    sc = scenarios()
    if args.only:
        sc = [s for s in sc if any(o in s["name"] for o in args.only)]
    if args.list:
        print("\n".join(s["name"] for s in sc))
        return
    if os.geteuid() != 0:
        sys.exit("run as root (tcpdump)")
    if not (NODE_DIR / "node_modules" / "ws").exists():
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "init", "-y"], cwd=NODE_DIR, check=True, capture_output=True)
        subprocess.run(["npm", "install", "ws@8"], cwd=NODE_DIR, check=True)
    shutil.rmtree(BUILD, ignore_errors=True)
    BUILD.mkdir(parents=True)
    (BUILD / "client.js").write_text(NODE_CLIENT)
    (BUILD / "www").mkdir()
    (BUILD / "www" / "page.html").write_text(PAGE_HTML)
    make_certs(BUILD / "certs")
    versions()
    try:
        start([sys.executable, SERVERS_PY, "ws-quiet", "--host", "127.0.0.1", "--port", str(P_BACKEND)], "backend")
        start([sys.executable, "-c", PAGE_SERVER, str(P_PAGE), PAGE_HTML, str(BUILD / "beacon.log")], "page")
        start(["nginx", "-c", str(nginx_conf(BUILD)), "-p", str(BUILD), "-g", "daemon off;"], "nginx")
        start(["haproxy", "-db", "-f", str(haproxy_conf(BUILD))], "haproxy")
        cenv = dict(os.environ, HOME=str(BUILD / "caddy-home"), XDG_DATA_HOME=str(BUILD / "caddy-data"),
                    XDG_CONFIG_HOME=str(BUILD / "caddy-config"))
        start(["caddy", "run", "--config", str(caddy_conf(BUILD)), "--adapter", "caddyfile"], "caddy", env=cenv)
        for port in (P_BACKEND, P_PAGE, P_NGX_PLAIN, P_NGX_GOOD, P_HAP_TLS, P_HAP_PLAIN, P_CADDY):
            wait_port(port)
        for s in sc:
            record(s)
    finally:
        for p in reversed(PROCS):
            stop(p)


if __name__ == "__main__":
    main()
