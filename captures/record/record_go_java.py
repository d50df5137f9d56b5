#!/usr/bin/env python3
"""Re-record every Go (gorilla/websocket) and Java (Tomcat 10 / JDK HttpClient)
WebSocket scenario, on loopback only, ports 16000-16999.

Run as root:  python3 captures/record/record_go_java.py [OUTDIR]
Needs only Debian packages: golang-go golang-github-gorilla-websocket-dev
tomcat10 openjdk-17-jdk-headless tcpdump curl (installed if missing).
Writes the .pcap files and VERSIONS.txt into OUTDIR (default: captures/go-java/), sources and
builds into $WSDIAG_RECORD_WORK (default /tmp/wsdiag-record-go-java).
"""
import os, signal, socket, subprocess, sys, time, shutil, base64

OUT = os.path.abspath(  # captures/go-java/ unless a folder is given
    sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "go-java")
)
WORK = os.environ.get("WSDIAG_RECORD_WORK", "/tmp/wsdiag-record-go-java")  # sources, builds, Tomcat base
GO_PORT, GO6_PORT, TC_PORT, PY_PORT = 16100, 16101, 16200, 16300
procs = []

GOWSD = r'''// gowsd: gorilla/websocket test server, loopback only.
package main

import (
	"flag"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

var plain = websocket.Upgrader{} // default CheckOrigin (same origin only)

func echo(c *websocket.Conn) {
	defer c.Close()
	for {
		mt, m, err := c.ReadMessage()
		if err != nil {
			log.Printf("read: %v", err)
			return
		}
		if err := c.WriteMessage(mt, m); err != nil {
			return
		}
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1:16100", "listen address")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := plain.Upgrade(w, r, nil)
		if err != nil {
			log.Printf("/ws upgrade: %v", err)
			return
		}
		echo(c)
	})
	proto := websocket.Upgrader{Subprotocols: []string{"chat.v2"}}
	mux.HandleFunc("/proto", func(w http.ResponseWriter, r *http.Request) {
		c, err := proto.Upgrade(w, r, nil)
		if err != nil {
			log.Printf("/proto upgrade: %v", err)
			return
		}
		log.Printf("/proto selected %q", c.Subprotocol())
		echo(c)
	})
	mux.HandleFunc("/auth", func(w http.ResponseWriter, r *http.Request) {
		a := r.Header.Get("Authorization")
		if a == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="ws"`)
			http.Error(w, "missing bearer token", http.StatusUnauthorized)
			return
		}
		if strings.TrimPrefix(a, "Bearer ") != "s3cret" {
			http.Error(w, "invalid token", http.StatusForbidden)
			return
		}
		c, err := plain.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		echo(c)
	})
	mux.HandleFunc("/limit", func(w http.ResponseWriter, r *http.Request) {
		c, err := plain.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		c.SetReadLimit(512)
		echo(c) // gorilla sends close 1009 when a message exceeds 512 bytes
	})
	mux.HandleFunc("/policy", func(w http.ResponseWriter, r *http.Request) {
		c, err := plain.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer c.Close()
		msg := websocket.FormatCloseMessage(websocket.ClosePolicyViolation, "subscription not allowed")
		c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})
	log.Printf("listening on %s", *addr)
	log.Fatal(http.ListenAndServe(*addr, mux))
}
'''

GOWSC = r'''// gowsc: gorilla/websocket Dialer test client, loopback only.
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	u := flag.String("url", "ws://127.0.0.1:16100/ws", "url")
	origin := flag.String("origin", "", "Origin header")
	proto := flag.String("proto", "", "comma-separated subprotocols")
	auth := flag.String("auth", "", "Authorization header")
	size := flag.Int("size", 5, "message size")
	wait := flag.Bool("wait", false, "wait for the server's close instead of sending one")
	flag.Parse()
	h := http.Header{}
	if *origin != "" {
		h.Set("Origin", *origin)
	}
	if *auth != "" {
		h.Set("Authorization", *auth)
	}
	d := websocket.Dialer{HandshakeTimeout: 3 * time.Second}
	if *proto != "" {
		d.Subprotocols = strings.Split(*proto, ",")
	}
	c, resp, err := d.Dial(*u, h)
	if err != nil {
		fmt.Printf("dial error: %v\n", err)
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			fmt.Printf("status %s body %q\n", resp.Status, b)
		}
		os.Exit(1)
	}
	defer c.Close()
	fmt.Printf("connected, subprotocol %q\n", c.Subprotocol())
	if *proto != "" && c.Subprotocol() == "" {
		fmt.Println("server selected no subprotocol; closing 1002")
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseProtocolError, "no subprotocol selected"), time.Now().Add(time.Second))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		c.ReadMessage()
		return
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if !*wait {
		if err := c.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", *size))); err != nil {
			fmt.Printf("write: %v\n", err)
		}
	}
	for {
		_, m, err := c.ReadMessage()
		if err != nil {
			fmt.Printf("read: %v\n", err)
			return
		}
		fmt.Printf("got %d bytes\n", len(m))
		if !*wait {
			c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		}
	}
}
'''

JAVA_SERVER = {
"Echo.java": '''import jakarta.websocket.*;
import jakarta.websocket.server.*;

@ServerEndpoint("/echo")
public class Echo {
    @OnMessage
    public String onMessage(String m) { return m; }
}
''',
"Strict.java": '''import jakarta.websocket.*;
import jakarta.websocket.server.*;

@ServerEndpoint(value = "/strict", configurator = Strict.OnlyOurOrigin.class)
public class Strict {
    public static class OnlyOurOrigin extends ServerEndpointConfig.Configurator {
        @Override
        public boolean checkOrigin(String origin) {
            return "https://app.example.com".equals(origin);
        }
    }
    @OnMessage
    public String onMessage(String m) { return m; }
}
''',
"Proto.java": '''import jakarta.websocket.*;
import jakarta.websocket.server.*;

@ServerEndpoint(value = "/proto", subprotocols = {"chat.v2"})
public class Proto {
    @OnMessage
    public String onMessage(String m) { return m; }
}
''',
"Policy.java": '''import jakarta.websocket.*;
import jakarta.websocket.server.*;
import java.io.IOException;

@ServerEndpoint("/policy")
public class Policy {
    @OnOpen
    public void onOpen(Session s) throws IOException {
        s.close(new CloseReason(CloseReason.CloseCodes.VIOLATED_POLICY, "subscription not allowed"));
    }
}
''',
}

JDKWS = '''import java.net.URI;
import java.net.http.*;
import java.time.Duration;
import java.util.concurrent.*;

// JDK java.net.http WebSocket client. args: url [origin|-] [subprotocol|-] [message|-]
public class JdkWs {
    public static void main(String[] a) throws Exception {
        HttpClient hc = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(3)).build();
        WebSocket.Builder b = hc.newWebSocketBuilder().connectTimeout(Duration.ofSeconds(3));
        if (a.length > 1 && !a[1].equals("-")) b.header("Origin", a[1]);
        if (a.length > 2 && !a[2].equals("-")) b.subprotocols(a[2]);
        String msg = a.length > 3 && !a[3].equals("-") ? a[3] : "hello";
        CompletableFuture<String> closed = new CompletableFuture<>();
        WebSocket.Listener l = new WebSocket.Listener() {
            public CompletionStage<?> onText(WebSocket ws, CharSequence d, boolean last) {
                System.out.println("got text: " + d);
                ws.sendClose(WebSocket.NORMAL_CLOSURE, "");
                ws.request(1);
                return null;
            }
            public CompletionStage<?> onClose(WebSocket ws, int code, String reason) {
                System.out.println("closed by server: " + code + " " + reason);
                closed.complete(code + "");
                return null;
            }
            public void onError(WebSocket ws, Throwable e) { System.out.println("error: " + e); closed.complete("error"); }
        };
        WebSocket ws;
        try {
            ws = b.buildAsync(URI.create(a[0]), l).get(5, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
            Throwable c = e.getCause();
            System.out.println("handshake failed: " + c);
            if (c instanceof WebSocketHandshakeException) {
                HttpResponse<?> r = ((WebSocketHandshakeException) c).getResponse();
                System.out.println("status " + r.statusCode() + " body " + r.body());
            }
            System.exit(1);
            return;
        }
        System.out.println("connected, subprotocol '" + ws.getSubprotocol() + "'");
        ws.sendText(msg, true);
        try { System.out.println("result " + closed.get(4, TimeUnit.SECONDS)); }
        catch (TimeoutException e) { System.out.println("timeout"); }
        System.exit(0);
    }
}
'''

SERVER_XML = '''<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="%d" address="127.0.0.1" protocol="HTTP/1.1" connectionTimeout="20000"/>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="true" autoDeploy="false"/>
    </Engine>
  </Service>
</Server>
''' % TC_PORT

TCLIB = "/usr/share/tomcat10/lib"

# Python websockets (PyPI, already used by wsdiag's own captures) echo server: to check how a
# current strict server treats the JDK client's `Content-Length: 0`.
PYWS = '''import asyncio, sys
from websockets.asyncio.server import serve
async def echo(ws):
    async for m in ws:
        await ws.send(m)
async def main():
    async with serve(echo, "127.0.0.1", int(sys.argv[1])):
        await asyncio.Future()
asyncio.run(main())
'''



def sh(cmd, **kw):
    print("+", cmd if isinstance(cmd, str) else " ".join(cmd), flush=True)
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, **kw)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def setup():
    need = [p for p, t in [("golang-go", "/usr/bin/go"), ("golang-github-gorilla-websocket-dev",
            "/usr/share/gocode/src/github.com/gorilla/websocket/server.go"), ("tomcat10", TCLIB + "/catalina.jar"),
            ("openjdk-17-jdk-headless", "/usr/bin/javac"), ("tcpdump", "/usr/bin/tcpdump"), ("curl", "/usr/bin/curl")]
            if not os.path.exists(t)]
    if need:
        sh("apt-get update -qq")
        sh(["apt-get", "install", "-y", "-qq"] + need)
    if os.path.exists(WORK):
        shutil.rmtree(WORK)
    # Go: GOPATH mode against Debian's /usr/share/gocode (no module proxy needed)
    gp = os.path.join(WORK, "go")
    write(os.path.join(gp, "src/gowsd/main.go"), GOWSD)
    write(os.path.join(gp, "src/gowsc/main.go"), GOWSC)
    env = dict(os.environ, GO111MODULE="off", GOPATH=gp + ":/usr/share/gocode",
               GOCACHE=os.path.join(WORK, "gocache"), GOFLAGS="")
    sh(["go", "build", "-o", os.path.join(WORK, "gowsd"), "gowsd"], cwd=gp, env=env)
    sh(["go", "build", "-o", os.path.join(WORK, "gowsc"), "gowsc"], cwd=gp, env=env)
    # Java: Tomcat 10 base with one webapp /app holding four @ServerEndpoints, and the JDK client
    src = os.path.join(WORK, "java/src")
    for n, t in JAVA_SERVER.items():
        write(os.path.join(src, n), t)
    write(os.path.join(src, "JdkWs.java"), JDKWS)
    write(os.path.join(WORK, "pyws.py"), PYWS)
    base = os.path.join(WORK, "java/base")
    classes = os.path.join(base, "webapps/app/WEB-INF/classes")
    os.makedirs(classes)
    cp = ":".join(TCLIB + "/" + j for j in ("websocket-api.jar", "websocket-client-api.jar", "servlet-api.jar"))
    sh(["javac", "-d", classes, "-cp", cp] + [os.path.join(src, n) for n in JAVA_SERVER])
    sh(["javac", "-d", os.path.join(WORK, "java/classes"), os.path.join(src, "JdkWs.java")])
    for d in ("conf", "logs", "temp", "work"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    for f in ("web.xml", "context.xml", "catalina.properties", "logging.properties"):
        shutil.copy("/etc/tomcat10/" + f, os.path.join(base, "conf", f))
    write(os.path.join(base, "conf/server.xml"), SERVER_XML)


def start(cmd, log, env=None):
    p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
    procs.append(p)
    return p


def wait_port(host, port, t=30):
    end = time.time() + t
    while time.time() < end:
        try:
            socket.create_connection((host, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("server on %s:%d did not come up" % (host, port))


def start_servers():
    start([os.path.join(WORK, "gowsd"), "-addr", "127.0.0.1:%d" % GO_PORT], os.path.join(WORK, "gowsd.log"))
    start([os.path.join(WORK, "gowsd"), "-addr", "[::1]:%d" % GO6_PORT], os.path.join(WORK, "gowsd6.log"))
    base = os.path.join(WORK, "java/base")
    env = dict(os.environ, CATALINA_HOME="/usr/share/tomcat10", CATALINA_BASE=base)
    start(["/usr/share/tomcat10/bin/catalina.sh", "run"], os.path.join(base, "logs/console.log"), env=env)
    start([sys.executable, os.path.join(WORK, "pyws.py"), str(PY_PORT)], os.path.join(WORK, "pyws.log"))
    wait_port("127.0.0.1", PY_PORT)
    wait_port("127.0.0.1", GO_PORT)
    wait_port("::1", GO6_PORT)
    wait_port("127.0.0.1", TC_PORT, 60)
    time.sleep(1)


def stop_servers():
    for p in procs:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def raw(host, port, request, close_frame=True):
    """Send exact request bytes, read the answer; after a 101 send a masked close 1000."""
    s = socket.create_connection((host, port), 3)
    s.sendall(request)
    s.settimeout(2)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            b = s.recv(65536)
            if not b:
                break
            data += b
        if data.startswith(b"HTTP/1.1 101") and close_frame:
            mask = b"\x11\x22\x33\x44"
            payload = b"\x03\xe8"
            s.sendall(b"\x88\x82" + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    except socket.timeout:
        pass
    s.close()
    print(data[:400])


def req(path, host, *headers):
    lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host] + list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
UPG = ["Upgrade: websocket", "Connection: Upgrade"]
G = "127.0.0.1:%d" % GO_PORT
T = "127.0.0.1:%d" % TC_PORT


def gowsc(*a):
    return [os.path.join(WORK, "gowsc")] + list(a)


def jdk(*a):
    return ["java", "-cp", os.path.join(WORK, "java/classes"), "JdkWs"] + list(a)


# (file, port, client: argv list or callable)
SCENARIOS = [
    # ---- Go: gorilla/websocket 1.5.0 server on net/http ServeMux
    ("gorilla-good-101", GO_PORT, gowsc("-url", "ws://%s/ws" % G)),
    ("gorilla-good-101-ipv6", GO6_PORT, gowsc("-url", "ws://[::1]:%d/ws" % GO6_PORT)),
    ("gorilla-origin-rejected-403", GO_PORT, gowsc("-url", "ws://%s/ws" % G, "-origin", "http://evil.example.com")),
    ("jdk-client-gorilla-origin-rejected-403", GO_PORT, jdk("ws://%s/ws" % G, "https://app.example.com")),
    ("gorilla-plain-get-400", GO_PORT, ["curl", "-s", "-i", "--max-time", "3", "http://%s/ws" % G]),
    ("gorilla-bad-websocket-version-400", GO_PORT,
     lambda: raw("127.0.0.1", GO_PORT, req("/ws", G, *UPG, KEY, "Sec-WebSocket-Version: 8"))),
    ("gorilla-missing-websocket-key-400", GO_PORT,
     lambda: raw("127.0.0.1", GO_PORT, req("/ws", G, *UPG, "Sec-WebSocket-Version: 13"))),
    ("gorilla-invalid-websocket-key-accepted-101", GO_PORT,
     lambda: raw("127.0.0.1", GO_PORT, req("/ws", G, *UPG, "Sec-WebSocket-Key: not-a-valid-key", "Sec-WebSocket-Version: 13"))),
    ("gorilla-subprotocol-none-client-closes-1002", GO_PORT, gowsc("-url", "ws://%s/proto" % G, "-proto", "chat.v1")),
    ("jdk-client-gorilla-subprotocol-none-101", GO_PORT, jdk("ws://%s/proto" % G, "-", "chat.v1")),
    ("gorilla-missing-token-401", GO_PORT, gowsc("-url", "ws://%s/auth" % G)),
    ("gorilla-token-rejected-403", GO_PORT, gowsc("-url", "ws://%s/auth" % G, "-auth", "Bearer wrong-token")),
    ("gorilla-wrong-path-404", GO_PORT, gowsc("-url", "ws://%s/socket" % G)),
    ("gorilla-readlimit-close-1009", GO_PORT, gowsc("-url", "ws://%s/limit" % G, "-size", "2000")),
    ("gorilla-policy-close-1008", GO_PORT, gowsc("-url", "ws://%s/policy" % G, "-wait")),
    # ---- Java: Tomcat 10.1 (Debian) with JSR 356 endpoints under /app, JDK 17 HttpClient WebSocket
    ("tomcat-good-101", TC_PORT, jdk("ws://%s/app/echo" % T)),
    ("tomcat-wrong-path-404", TC_PORT, jdk("ws://%s/app/chat" % T)),
    ("gorilla-client-tomcat-no-context-404", TC_PORT, gowsc("-url", "ws://%s/echo" % T)),
    ("jdk-client-403", TC_PORT, jdk("ws://%s/app/strict" % T, "http://evil.example.com")),
    ("tomcat-origin-rejected-403-gorilla-client", TC_PORT, gowsc("-url", "ws://%s/app/strict" % T, "-origin", "http://127.0.0.1:%d" % TC_PORT)),
    ("tomcat-plain-get-404", TC_PORT, ["curl", "-s", "-i", "--max-time", "3", "http://%s/app/echo" % T]),
    ("tomcat-missing-websocket-key-400", TC_PORT,
     lambda: raw("127.0.0.1", TC_PORT, req("/app/echo", T, *UPG, "Sec-WebSocket-Version: 13"))),
    ("tomcat-invalid-websocket-key-400", TC_PORT,
     lambda: raw("127.0.0.1", TC_PORT, req("/app/echo", T, *UPG, "Sec-WebSocket-Key: not-a-valid-key", "Sec-WebSocket-Version: 13"))),
    ("tomcat-bad-websocket-version-426", TC_PORT,
     lambda: raw("127.0.0.1", TC_PORT, req("/app/echo", T, *UPG, KEY, "Sec-WebSocket-Version: 8"))),
    ("jdk-client-tomcat-subprotocol-none-101", TC_PORT, jdk("ws://%s/app/proto" % T, "-", "chat.v1")),
    ("gorilla-client-tomcat-subprotocol-none-1002", TC_PORT, gowsc("-url", "ws://%s/app/proto" % T, "-proto", "chat.v1")),
    ("tomcat-policy-close-1008", TC_PORT, jdk("ws://%s/app/policy" % T)),
    ("tomcat-message-too-big-1009", TC_PORT, gowsc("-url", "ws://%s/app/echo" % T, "-size", "10000")),
    # ---- JDK client against Python websockets (a strict parser): does `Content-Length: 0` matter?
    ("jdk-client-websockets-good-101", PY_PORT, jdk("ws://127.0.0.1:%d/" % PY_PORT)),
]


def record(name, port, client):
    pcap = os.path.join(OUT, name + ".pcap")
    td = subprocess.Popen(["tcpdump", "-i", "lo", "-U", "--immediate-mode", "-n", "-s", "0", "-w", pcap,
                           "tcp port %d" % port], stderr=subprocess.DEVNULL, start_new_session=True)
    time.sleep(1.0)
    print("=== %s" % name, flush=True)
    try:
        if callable(client):
            client()
        else:
            subprocess.run(client, timeout=20)
    finally:
        time.sleep(0.5)
        td.send_signal(signal.SIGINT)
        td.wait(10)
    print("    %s: %d bytes" % (pcap, os.path.getsize(pcap)), flush=True)


def versions():
    def out(cmd):
        try:
            r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
            return (r.stdout + r.stderr).strip()
        except Exception as e:
            return str(e)
    lines = [
        "go: " + out("go version"),
        "gorilla/websocket (Debian): " + out("dpkg-query -W -f '${Version}' golang-github-gorilla-websocket-dev"),
        "golang-go (Debian): " + out("dpkg-query -W -f '${Version}' golang-go"),
        "tomcat10 (Debian): " + out("dpkg-query -W -f '${Version}' tomcat10"),
        "tomcat server info: " + out("CATALINA_HOME=/usr/share/tomcat10 /usr/share/tomcat10/bin/version.sh 2>/dev/null | grep -E 'Server (version|number)' | tr '\\n' ' '"),
        "java: " + out("java -version 2>&1 | tr '\\n' ' '"),
        "tcpdump: " + out("tcpdump --version 2>&1 | head -1"),
        "tshark: " + out("tshark --version 2>/dev/null | head -1"),
        "curl: " + out("curl --version | head -1"),
        "python: " + sys.version.split()[0],
        "websockets (PyPI): " + out(sys.executable + " -c 'import websockets; print(websockets.__version__)'"),
        "wsdiag (git HEAD): " + out(f"git -C {os.path.dirname(os.path.abspath(__file__))} log -1 --format='%h %s'"),
        "os: " + out("grep PRETTY_NAME /etc/os-release"),
    ]
    write(os.path.join(OUT, "VERSIONS.txt"), "\n".join(lines) + "\n")


def main():
    if os.geteuid() != 0:
        raise SystemExit("run as root (tcpdump)")
    os.makedirs(OUT, exist_ok=True)
    setup()
    only = set(os.environ.get("ONLY", "").split(",")) - {""}
    try:
        start_servers()
        for name, port, client in SCENARIOS:
            if not only or name in only:
                record(name, port, client)
    finally:
        stop_servers()
    versions()


if __name__ == "__main__":
    main()
