"""`wsdiag live` for real: packet sockets, a real WebSocket server, real clients, real signals.

Two hosts in network namespaces joined by a veth pair (tests/netns.py): "esp32", whose veth has an
Espressif MAC and which sends the firmware's exact request bytes (with and without a token), and
"server", which runs the xiaozhi-like server and `wsdiag live`. Then on `lo`: Ctrl-C / SIGTERM
mid-capture, --count, dropping root to nobody, CAP_NET_RAW alone, and the one-line errors.
Everything runs as root (as CI does) and is skipped with a reason otherwise.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import netns

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "captures" / "record" / "xiaozhi_like_server.py"
WSDIAG = [sys.executable, "-m", "analyzer"]
AUTH_KEY = "wsdiag-live-test-key"
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    "NO_COLOR": "1",
}
ENV.pop("SUDO_USER", None)

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="live capture tests need root (CI runs as root)")


def token(client_id: str, device_id: str, ts: int | None = None) -> str:
    """xiaozhi's token: base64url(HMAC-SHA256(key, "client|device|ts")) + "." + ts."""
    ts = int(time.time()) if ts is None else ts
    sig = hmac.new(AUTH_KEY.encode(), f"{client_id}|{device_id}|{ts}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(sig).decode().rstrip("=") + f".{ts}"


# Runs inside the esp32 namespace: the firmware's request bytes (xiaozhi-protocol.md §3.4) with a
# good token and without one, then the websockets client with a good token, then a closed port.
CLIENTS = r"""
import asyncio, base64, json, os, socket, sys
import websockets
host, port, closed_port, mac, good_token, ws_token, ws_client = sys.argv[1:8]

def frame(text):
    data = text.encode(); mask = os.urandom(4)
    if len(data) < 126:
        head = bytes([0x81, 0x80 | len(data)])
    else:
        head = bytes([0x81, 0xFE]) + len(data).to_bytes(2, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))

def firmware(auth):
    s = socket.create_connection((host, int(port)), timeout=5)
    lines = [b"GET /xiaozhi/v1/ HTTP/1.1", b"Host: " + host.encode()]
    if auth:
        lines.append(b"Authorization: Bearer " + auth.encode())
    lines += [b"Client-Id: " + CLIENT.encode(), b"Connection: Upgrade", b"Device-Id: " + mac.encode(),
              b"Protocol-Version: 1", b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)),
              b"Sec-WebSocket-Version: 13", b"Upgrade: websocket"]
    s.sendall(b"\r\n".join(lines) + b"\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            break
        head += chunk
    print("firmware", bool(auth), head.split(b"\r\n")[0].decode(), flush=True)
    s.sendall(frame(json.dumps({"type": "hello", "version": 1, "features": {"mcp": False},
                                "transport": "websocket", "audio_params": {"format": "opus",
                                "sample_rate": 16000, "channels": 1, "frame_duration": 60}})))
    try:
        s.settimeout(2)
        print("firmware got", len(s.recv(4096)), flush=True)
    except OSError:
        pass
    s.close()  # the ESP32 destroys the socket without a Close frame

CLIENT = os.environ["CLIENT_ID"]
firmware(good_token)
firmware("")

async def python_client():
    headers = {"Device-Id": mac, "Client-Id": ws_client, "Authorization": "Bearer " + ws_token}
    async with websockets.connect(f"ws://{host}:{port}/xiaozhi/v1/", additional_headers=headers) as ws:
        await ws.send(json.dumps({"type": "hello", "transport": "websocket"}))
        print("python got", (await asyncio.wait_for(ws.recv(), 5))[:40], flush=True)
asyncio.run(python_client())

try:
    socket.create_connection((host, int(closed_port)), timeout=3)
except OSError as e:
    print("closed port:", e, flush=True)
"""


def wait_for(path: Path, pattern: str, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace") if path.exists() else ""
        if re.search(pattern, text):
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not seen in {path.name}: {path.read_text(errors='replace')!r}")


def start(argv: list[str], out: Path, err: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as o, err.open("wb") as e:
        return subprocess.Popen(argv, stdout=o, stderr=e, env=ENV, cwd=ROOT)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(5)


def verdicts(handshakes: list[dict]) -> list[tuple[str, str, str, str | None, bool]]:
    return sorted(
        (h["client"], h["server"], h["outcome"], h["cause"] and h["cause"]["name"], h["failed"])
        for h in handshakes
    )


def capinfos_count(path: Path) -> int:
    done = subprocess.run(["capinfos", "-c", "-M", str(path)], capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert "truncated" not in done.stderr.lower() and "error" not in done.stderr.lower(), done.stderr
    return int(re.search(r"Number of packets:\s+(\d+)", done.stdout).group(1))  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# two namespaces


@pytest.fixture
def lab() -> Iterator[netns.Lab]:
    reason = netns.skip_reason()
    if reason:
        pytest.skip(reason)
    made = netns.create()
    try:
        yield made
    finally:
        netns.destroy(made)


@pytest.mark.skipif(not SERVER.exists(), reason="captures/record/xiaozhi_like_server.py is missing")
def test_esp32_lab_good_and_failing_handshakes(lab: netns.Lab, tmp_path: Path) -> None:
    server = start(
        lab.in_server(
            sys.executable,
            str(SERVER),
            "--host",
            lab.server_ip,
            "--port",
            "8000",
            "--auth",
            "--auth-key",
            AUTH_KEY,
        ),
        tmp_path / "srv.out",
        tmp_path / "srv.err",
    )
    pcap = tmp_path / "out.pcapng"
    live = start(
        lab.in_server(
            *WSDIAG,
            "live",
            "-i",
            lab.server_if,
            "--port",
            "8000",
            "--port",
            "8001",
            "--format",
            "jsonl",
            "--write",
            str(pcap),
            "--duration",
            "9",
            "--auth-key",
            AUTH_KEY,
        ),
        tmp_path / "live.out",
        tmp_path / "live.err",
    )
    try:
        wait_for(tmp_path / "srv.err", "listening on", server)
        wait_for(tmp_path / "live.err", "listening on", live)
        client_id, ws_client = str(uuid.uuid4()), str(uuid.uuid4())
        clients = subprocess.run(
            lab.in_esp32(
                sys.executable,
                "-c",
                CLIENTS,
                lab.server_ip,
                "8000",
                "8001",
                lab.esp32_mac,
                token(client_id, lab.esp32_mac),
                token(ws_client, lab.esp32_mac),
                ws_client,
            ),
            capture_output=True,
            text=True,
            timeout=30,
            env={**ENV, "CLIENT_ID": client_id},
            cwd=ROOT,
        )
        assert clients.returncode == 0, clients.stderr
        assert "firmware True HTTP/1.1 101" in clients.stdout
        live.wait(30)
    finally:
        stop(live)
        stop(server)
    err = (tmp_path / "live.err").read_text()
    assert live.returncode == 1, err  # handshakes failed
    assert "Traceback" not in err
    seen = [json.loads(line) for line in (tmp_path / "live.out").read_text().splitlines()]
    esp = f"{lab.esp32_ip}:"
    by_cause = {h["cause"]["name"] if h["cause"] else None: h for h in seen}
    assert all(h["client"].startswith(esp) and h["client_mac"] == lab.esp32_mac for h in seen)
    good = [h for h in seen if not h["failed"]]
    assert len(good) == 2 and all(h["outcome"] == "upgraded" for h in good)  # firmware + python client
    assert "missing-token" in by_cause  # the firmware request without Authorization
    assert by_cause["missing-token"]["outcome"] == "upgraded"  # 101, then 认证失败 and a close
    assert "port-closed" in by_cause and by_cause["port-closed"]["outcome"] == "reset"
    assert len(seen) == 4
    assert (
        token(client_id, lab.esp32_mac).split(".")[0] not in (tmp_path / "live.out").read_text()
    )  # redacted
    # the device table: the Espressif device with the Device-Id it claimed
    assert "ESP32 Espressif" in err and lab.esp32_mac in err
    assert re.search(r"captured \d+ packets .* 4 handshakes, 2 failed", err)
    # the capture file reads back to the same verdicts
    packets = capinfos_count(pcap)
    assert f"wrote {packets} packets" in err
    done = subprocess.run(
        [*WSDIAG, "analyze", str(pcap), "--format", "json", "--expect-port", "8001", "--auth-key", AUTH_KEY],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 1, done.stderr
    assert verdicts(json.loads(done.stdout)["handshakes"]) == verdicts(seen)


def test_esp32_only_filter(lab: netns.Lab, tmp_path: Path) -> None:
    """--esp32 keeps the Espressif client; a client with another MAC (the server side here) is left out."""
    server = start(
        lab.in_esp32(sys.executable, "-m", "http.server", "--bind", lab.esp32_ip, "8080"),
        tmp_path / "h.out",
        tmp_path / "h.err",
    )
    live = start(
        lab.in_server(
            *WSDIAG, "live", "-i", lab.server_if, "--esp32", "--format", "jsonl", "--duration", "4"
        ),
        tmp_path / "live.out",
        tmp_path / "live.err",
    )
    try:
        wait_for(tmp_path / "live.err", "listening on", live)
        time.sleep(0.5)
        # the server-side host connects to the esp32 side: a plain HTTP GET with an Upgrade header
        req = (
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        code = (
            "import socket,time\nfor i in range(20):\n try:\n"
            f"  s=socket.create_connection(('{lab.esp32_ip}',8080),2);break\n"
            f" except OSError: time.sleep(0.1)\ns.sendall({req!r}.encode());s.recv(4096);s.close()"
        )
        subprocess.run(lab.in_server(sys.executable, "-c", code), check=True, timeout=20, env=ENV)
        live.wait(20)
    finally:
        stop(live)
        stop(server)
    err = (tmp_path / "live.err").read_text()
    assert (tmp_path / "live.out").read_text() == "", "a non-Espressif client was reported with --esp32"
    assert "not shown (--esp32)" in err


# --------------------------------------------------------------------------------------------
# loopback


@pytest.fixture
def lo_server(tmp_path: Path) -> Iterator[int]:
    if os.geteuid() != 0:
        pytest.skip("live capture tests need root (CI runs as root)")
    if not SERVER.exists():
        pytest.skip("captures/record/xiaozhi_like_server.py is missing")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start(
        [sys.executable, str(SERVER), "--host", "127.0.0.1", "--port", str(port), "--auth"],
        tmp_path / "lo-srv.out",
        tmp_path / "lo-srv.err",
    )
    try:
        wait_for(tmp_path / "lo-srv.err", "listening on", proc)
        yield port
    finally:
        stop(proc)


def traffic(port: int, rounds: int = 3) -> None:
    """Upgrade attempts without a token on loopback: each one is refused after the 101."""
    code = (
        "import asyncio, sys, websockets\n"
        "async def one():\n"
        f"    async with websockets.connect('ws://127.0.0.1:{port}/xiaozhi/v1/',"
        " additional_headers={'Device-Id': 'a0:b7:65:00:00:01'}) as ws:\n"
        '        await ws.send(\'{"type": "hello"}\')\n'
        "        try:\n            await asyncio.wait_for(ws.recv(), 3)\n"
        "        except Exception:\n            pass\n"
        f"for _ in range({rounds}):\n"
        "    try:\n        asyncio.run(one())\n    except Exception:\n        pass\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30, env=ENV)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_capture_keeps_file_and_summary(
    lo_server: int, tmp_path: Path, sig: int, code: int
) -> None:
    pcap = tmp_path / "cut.pcapng"
    live = start(
        [*WSDIAG, "live", "-i", "lo", "--port", str(lo_server), "--write", str(pcap)],
        tmp_path / "live.out",
        tmp_path / "live.err",
    )
    try:
        wait_for(tmp_path / "live.err", "listening on", live)
        traffic(lo_server)
        time.sleep(0.3)
        live.send_signal(sig)
        live.wait(15)
    finally:
        stop(live)
    out, err = (tmp_path / "live.out").read_text(), (tmp_path / "live.err").read_text()
    assert live.returncode == code, err
    assert "Traceback" not in err
    assert out.count("CAUSE: missing-token") == 3  # each handshake block, in text
    assert f"stopped by {signal.Signals(sig).name}" in out and "devices" in out  # the summary
    packets = capinfos_count(pcap)
    assert packets > 0 and f"wrote {packets} packets" in out


def test_count_stops_and_jsonl(lo_server: int, tmp_path: Path) -> None:
    pcap = tmp_path / "five.pcapng"
    live = start(
        [
            *WSDIAG,
            "live",
            "-i",
            "lo",
            "--port",
            str(lo_server),
            "--count",
            "12",
            "--format",
            "jsonl",
            "--write",
            str(pcap),
            "--duration",
            "20",
        ],
        tmp_path / "live.out",
        tmp_path / "live.err",
    )
    try:
        wait_for(tmp_path / "live.err", "listening on", live)
        traffic(lo_server, rounds=2)
        live.wait(15)
    finally:
        stop(live)
    err = (tmp_path / "live.err").read_text()
    assert "stopped by count" in err, err
    assert capinfos_count(pcap) == 12
    for line in (tmp_path / "live.out").read_text().splitlines():
        assert json.loads(line)["input"] == "live:lo"


def test_any_captures_every_interface_once(lo_server: int, tmp_path: Path) -> None:
    """`-i any`: one cooked socket on all interfaces. Beside a capture on `lo` of the same
    traffic it holds exactly as many packets (loopback's doubled packets kept once), is written
    as Linux cooked (SLL) records and reads back to the same verdicts."""
    argv = [*WSDIAG, "live", "--port", str(lo_server), "--format", "jsonl", "--duration", "5"]
    any_, lo = tmp_path / "any.pcapng", tmp_path / "lo.pcapng"
    live = start([*argv, "-i", "any", "--write", str(any_)], tmp_path / "any.out", tmp_path / "any.err")
    ref = start([*argv, "-i", "lo", "--write", str(lo)], tmp_path / "lo.out", tmp_path / "lo.err")
    try:
        wait_for(tmp_path / "any.err", "listening on any", live)
        wait_for(tmp_path / "lo.err", "listening on lo", ref)
        traffic(lo_server, rounds=2)
        live.wait(20)
        ref.wait(20)
    finally:
        stop(live)
        stop(ref)
    err = (tmp_path / "any.err").read_text()
    assert live.returncode == 1 and "Traceback" not in err, err
    rows = [json.loads(line) for line in (tmp_path / "any.out").read_text().splitlines()]
    assert [(r["kind"], r["cause"]["name"]) for r in rows] == [("handshake", "missing-token")] * 2
    assert capinfos_count(any_) == capinfos_count(lo) > 0
    info = subprocess.run(["capinfos", "-E", str(any_)], capture_output=True, text=True, timeout=20).stdout
    assert "Linux cooked" in info, info
    done = subprocess.run([*WSDIAG, "analyze", str(any_), "--format", "json"], capture_output=True, text=True,
                          env=ENV, timeout=60)
    assert verdicts(json.loads(done.stdout)["handshakes"]) == verdicts(rows)


def test_bridged_copies_are_dropped_retransmissions_kept() -> None:
    from analyzer.sources.live import BRIDGED_COPY_NS, BridgedCopies

    copies = BridgedCopies(kept=2)
    assert not copies.seen(b"syn", "veth1", 1000)
    assert copies.seen(b"syn", "docker0", 1000 + BRIDGED_COPY_NS)  # the bridge's copy
    assert not copies.seen(b"syn", "veth1", 1000 + 200_000_000)  # same interface later: a retransmission
    assert not copies.seen(b"syn", "docker0", 1000 + 2 * BRIDGED_COPY_NS + 200_000_000)  # too late
    for data in (b"a", b"b", b"c"):  # bounded: the oldest are forgotten
        copies.seen(data, "veth1", 0)
    assert not copies.seen(b"syn", "eth0", 1000 + 2 * BRIDGED_COPY_NS + 200_000_000)


OTA_SERVERS = ROOT / "captures" / "record" / "servers.py"


def test_ota_checks_are_printed_as_they_finish(tmp_path: Path) -> None:
    """A device's OTA check-in is its own block in live text output and a `"kind": "ota"` line in
    JSONL, with the verdict `analyze` gives on the same packets: here the OTA server hands out
    0.0.0.0, a bind address no device can connect to."""
    if os.geteuid() != 0:
        pytest.skip("live capture tests need root (CI runs as root)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start(
        [sys.executable, str(OTA_SERVERS), "ota", "--port", str(port), "--ws-url", "ws://0.0.0.0:8000/xiaozhi/v1/"],
        tmp_path / "ota.out",
        tmp_path / "ota.err",
    )
    common = ["live", "-i", "lo", "--port", str(port), "--duration", "5"]
    text = start([*WSDIAG, *common], tmp_path / "text.out", tmp_path / "text.err")
    pcap = tmp_path / "ota.pcapng"
    argv = [*WSDIAG, *common, "--format", "jsonl", "--write", str(pcap)]
    jsonl = start(argv, tmp_path / "jsonl.out", tmp_path / "jsonl.err")
    try:
        wait_for(tmp_path / "text.err", "listening on", text)
        wait_for(tmp_path / "jsonl.err", "listening on", jsonl)
        deadline = time.monotonic() + 10
        while True:  # the OTA server is up once it accepts
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "ota.err").read_text()
                time.sleep(0.1)
        post = (
            "import urllib.request, sys\n"
            f"req = urllib.request.Request('http://127.0.0.1:{port}/xiaozhi/ota/', data=b'{{}}',"
            " method='POST', headers={'Device-Id': 'a0:b7:65:00:00:09', 'Content-Type': 'application/json',"
            " 'Client-Id': '6c5e6f4e-1c55-4c55-9d3b-2b7c1d2e3f40'})\n"
            "print(urllib.request.urlopen(req, timeout=5).read()[:60])\n"
        )
        subprocess.run([sys.executable, "-c", post], check=True, timeout=20, env=ENV)
        text.wait(20)
        jsonl.wait(20)
    finally:
        for proc in (text, jsonl, server):
            stop(proc)
    out = (tmp_path / "text.out").read_text()
    assert re.search(rf"OTA 127\.0\.0\.1:\d+ → 127\.0\.0\.1:{port}  POST /xiaozhi/ota/ → 200", out), out
    assert "ota-url-unreachable" in out and "1 OTA checks failed" in out
    rows = [json.loads(line) for line in (tmp_path / "jsonl.out").read_text().splitlines()]
    [ota] = [r for r in rows if r["kind"] == "ota"]
    assert ota["cause"]["name"] == "ota-url-unreachable" and ota["response"]["status"] == 200
    assert ota["request"]["target"] == "/xiaozhi/ota/" and ota["input"] == "live:lo"
    argv = [*WSDIAG, "analyze", str(pcap), "--format", "jsonl"]
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=60)
    [again] = [json.loads(line) for line in done.stdout.splitlines()]
    assert again["kind"] == "ota" and again["cause"] == ota["cause"]


def test_root_drops_to_nobody(lo_server: int, tmp_path: Path) -> None:
    """Started as root with --user nobody: uid 65534 and no capability once the socket is open,
    and the --write file is created by nobody (in a directory anyone may write to)."""
    shared = Path(tempfile.mkdtemp(prefix="wsd-drop-"))
    shared.chmod(0o777)
    pcap = shared / "dropped.pcapng"
    live = start(
        [
            *WSDIAG,
            "live",
            "-i",
            "lo",
            "--port",
            str(lo_server),
            "--user",
            "nobody",
            "--write",
            str(pcap),
            "--format",
            "jsonl",
            "--duration",
            "6",
        ],
        tmp_path / "live.out",
        tmp_path / "live.err",
    )
    try:
        wait_for(tmp_path / "live.err", "listening on", live)
        status = Path(f"/proc/{live.pid}/status").read_text()
        traffic(lo_server, rounds=1)
        live.wait(20)
    finally:
        stop(live)
    err = (tmp_path / "live.err").read_text()
    assert live.returncode == 1, err
    assert re.search(r"^Uid:\s+65534\s+65534\s+65534\s+65534$", status, re.M), status
    assert re.search(r"^CapEff:\s+0+$", status, re.M) and re.search(r"^NoNewPrivs:\s+1$", status, re.M)
    assert "dropped root: now user nobody" in err
    st = pcap.stat()
    assert st.st_uid == 65534 and stat.S_IMODE(st.st_mode) == 0o600
    assert len((tmp_path / "live.out").read_text().splitlines()) == 1
    pcap.unlink()
    shared.rmdir()


def _reachable_by_others(path: str) -> bool:
    p = Path(path).resolve()
    return all(os.stat(d).st_mode & stat.S_IXOTH for d in [*reversed(p.parents)]) and bool(
        os.stat(p).st_mode & stat.S_IROTH
    )


def test_cap_net_raw_alone_is_enough(lo_server: int, tmp_path: Path) -> None:
    """uid 65534 holding only CAP_NET_RAW (ambient, as systemd or setcap give it) captures, then clears it."""
    if subprocess.run(["which", "setpriv"], capture_output=True).returncode:
        pytest.skip("setpriv (util-linux) is not installed")
    caps = "+net_raw"
    if not _reachable_by_others(sys.executable) or not _reachable_by_others(str(ROOT / "analyzer")):
        caps += ",+dac_read_search"  # this interpreter lives under a private home: let nobody read it
    prefix = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        f"--inh-caps={caps}",
        f"--ambient-caps={caps}",
    ]
    live = start(
        [
            *prefix,
            *WSDIAG,
            "live",
            "-i",
            "lo",
            "--port",
            str(lo_server),
            "--format",
            "jsonl",
            "--duration",
            "5",
        ],
        tmp_path / "live.out",
        tmp_path / "live.err",
    )
    try:
        wait_for(tmp_path / "live.err", "listening on", live)
        status = Path(f"/proc/{live.pid}/status").read_text()
        traffic(lo_server, rounds=1)
        live.wait(20)
    finally:
        stop(live)
    err = (tmp_path / "live.err").read_text()
    assert live.returncode == 1, err
    assert "capabilities cleared" in err
    assert re.search(r"^CapEff:\s+0+$", status, re.M) and re.search(r"^CapAmb:\s+0+$", status, re.M), status
    assert len((tmp_path / "live.out").read_text().splitlines()) == 1


# --------------------------------------------------------------------------------------------
# one-line errors


@needs_root
def test_without_privilege_one_line_exit_2() -> None:
    if subprocess.run(["which", "setpriv"], capture_output=True).returncode:
        pytest.skip("setpriv (util-linux) is not installed")
    if _reachable_by_others(sys.executable):
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"]
    else:  # root without CAP_NET_RAW: the interpreter stays readable, the packet socket does not
        prefix = ["setpriv", "--bounding-set=-net_raw", "--inh-caps=-all"]
    done = subprocess.run(
        [*prefix, *WSDIAG, "live", "-i", "lo", "--duration", "1"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wsdiag: error: live capture needs root or CAP_NET_RAW")
    assert "setcap cap_net_raw" in lines[0]


def test_unknown_interface_lists_real_ones() -> None:
    done = subprocess.run(
        [*WSDIAG, "live", "-i", "nosuch0"], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=30
    )
    assert done.returncode == 2
    assert re.fullmatch(
        r"wsdiag: error: no such interface 'nosuch0' \(available: .*\blo\b.*\)\n", done.stderr
    )


@needs_root
def test_bad_filter_one_line() -> None:
    done = subprocess.run(
        [*WSDIAG, "live", "-i", "lo", "--filter", "tcp port"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert done.stderr.startswith("wsdiag: error: bad capture filter 'tcp port'")


def test_interfaces_lists_lo_with_address() -> None:
    done = subprocess.run(
        [*WSDIAG, "interfaces", "--format", "json"],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)["interfaces"]}
    assert "lo" in rows and rows["lo"]["capturable"]
    assert any(a.startswith("127.0.0.1/") for a in rows["lo"]["addresses"]) or not rows["lo"]["addresses"]
