#!/usr/bin/env python3
"""Verify the recorded captures with tshark and write captures/expected.tsv and
captures/README.md (the table part) from the scenario metadata in record.py.

Usage:  python3 captures/record/make_index.py [--dir captures/] [--check-only]

For every capture it prints, per TCP stream (tshark numbering), the first request,
the first response status and the WebSocket frames (opcode, RSV1, text, close code),
so a human can check that the capture shows what its row claims.  It fails if the
number of streams differs from the scenario metadata.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import record  # noqa: E402

SEP = "\x1f"


def tshark(pcap: Path, args: list[str]) -> list[list[str]]:
    out = subprocess.run(["tshark", "-r", str(pcap), *args, "-T", "fields", "-E", f"separator={SEP}",
                          "-E", "occurrence=a", "-E", "aggregator=|"],
                         capture_output=True, text=True, check=True).stdout
    return [line.split(SEP) for line in out.splitlines() if line]


def decode_args(pcap: Path) -> list[str]:
    """Decode every server port as HTTP, or TLS when the client's first payload byte is 0x16."""
    rows = tshark(pcap, ["-Y", "tcp.flags.syn==1 && tcp.flags.ack==0", "-e", "tcp.dstport"])
    ports = sorted({r[0] for r in rows})
    first = tshark(pcap, ["-Y", "tcp.len>0", "-e", "tcp.dstport", "-e", "tcp.payload"])
    tls_ports = set()
    seen = set()
    for dport, payload in first:
        if dport in ports and dport not in seen:
            seen.add(dport)
            if payload.startswith("16"):
                tls_ports.add(dport)
    args = []
    for p in ports:
        args += ["-d", f"tcp.port=={p},{'tls' if p in tls_ports else 'http'}"]
    return args


def analyse(pcap: Path) -> dict[int, dict]:
    d = decode_args(pcap)
    streams: dict[int, dict] = defaultdict(lambda: {"client": "", "server": "", "method": "none",
                                                    "target": "none", "status": "none", "frames": [],
                                                    "tls": False, "flags": set(), "req_headers": ""})
    syn = tshark(pcap, ["-Y", "tcp.flags.syn==1 && tcp.flags.ack==0", "-e", "tcp.stream", "-e", "ip.src",
                        "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport"])
    for st, s4, s6, sp, d4, d6, dp in syn:
        s = streams[int(st)]
        s["client"] = f"{s4 or '[' + s6 + ']'}:{sp}"
        s["server"] = f"{d4 or '[' + d6 + ']'}:{dp}"
    for st, method, uri, code in tshark(pcap, [*d, "-Y", "http", "-e", "tcp.stream", "-e", "http.request.method", "-e", "http.request.uri", "-e", "http.response.code"]):
        s = streams[int(st)]
        if method and s["method"] == "none":
            s["method"], s["target"] = method, uri
        if code and s["status"] == "none":
            s["status"] = code
    for st, op, rsv, text, cc in tshark(pcap, [*d, "-Y", "websocket", "-e", "tcp.stream", "-e", "websocket.opcode", "-e", "websocket.rsv", "-e", "websocket.payload.text", "-e", "websocket.payload.close.status_code"]):
        for o, r, in zip(op.split("|"), rsv.split("|"), strict=False):
            streams[int(st)]["frames"].append(f"op{o}{'/rsv' + r if r not in ('0', '') else ''}")
        if text:
            streams[int(st)]["frames"].append(repr(text[:40]))
        if cc:
            streams[int(st)]["frames"].append(f"close={cc}")
    for st, flags in tshark(pcap, ["-e", "tcp.stream", "-e", "tcp.flags.str"]):
        f = flags.replace("·", "").strip()
        for name, ch in (("SYN", "S"), ("FIN", "F"), ("RST", "R")):
            if ch in f:
                streams[int(st)]["flags"].add(name)
    for st, _ct in tshark(pcap, [*d, "-Y", "tls.handshake", "-e", "tcp.stream", "-e", "tls.handshake.type"]):
        streams[int(st)]["tls"] = True
    return dict(sorted(streams.items()))


README_HEAD = """# Loopback captures of real WebSocket handshakes

Every `.pcap` here was recorded on the loopback interface by
[`record/record.py`](record/record.py): it starts the real server software on
127.0.0.1 (or ::1), starts `tcpdump -i lo -U --immediate-mode -s 0 -w FILE 'tcp port …'`,
runs a real client, and stops tcpdump with SIGINT.  No other address was ever contacted
(the OTA answers that name `xiaozhi.server.com` or `172.17.0.2` were recorded but never
followed).  Tokens are made up but well-formed: `base64url_nopad(HMAC-SHA256("wsdiag-test-key",
"<client-id>|<device-id>|<ts>")) + "." + ts`, computed like xiaozhi's `AuthManager`.

Re-record everything (needs root for tcpdump, plus nginx, openssl, tshark):

    sudo python3 captures/record/record.py            # all scenarios, ~1 min
    sudo python3 captures/record/record.py --only xiaozhi-good-handshake
    python3 captures/record/make_index.py             # re-verify with tshark, rewrite expected.tsv + this file

(`record.py --list` lists scenario names.)  Re-recording changes timestamps, ports of the
client side, Sec-WebSocket-Key/Accept, session ids and token timestamps, and timing details
(which of two crossing frames comes first, whether a late ACK/RST closes the teardown); the
HTTP statuses, bodies, frame contents and close codes stay the same.

## Software and versions

{versions}

**Library version caveat.** The xiaozhi-like server is a re-creation of
xiaozhi-esp32-server's handshake/auth code ([`record/xiaozhi_like_server.py`](record/xiaozhi_like_server.py),
spec sections 1.2–1.5) running on the installed **websockets {ws_version}**; the real server pins
**websockets 14.2**.  The difference is visible on the wire: every response carries
`Server: Python/3.11 websockets/{ws_version}` (the real server: `Python/3.10 websockets/14.2` in Docker),
and malformed requests that 14.2 drops silently get an HTTP answer from 17.x (405 for non-GET,
505 for `HTTP/1.0`, 414/431 for oversized lines/headers).  All other behaviour in these captures
(200 "Server is running", 101 + `认证失败` + Close 1000, 101 + `端口正常…` + Close 1000,
101 + Close 1011, 400/426 bodies) is what the spec documents for 14.2 as well.

The ESP32 client is `esp32-fw-sim`: a raw-socket re-creation of the firmware's request bytes
(spec 3.4: `Host` without port, all other headers byte-wise sorted, no `User-Agent`, no `Origin`,
no extensions; the hello of spec 3.5 sent as a masked text frame; on a Close frame it drops the
socket without sending a Close back; at the end of a good session it also just drops the socket).
Its OTA request follows spec 3.2 (POST, sorted headers, JSON body).  It is not a hardware capture.

## Captures

Columns: *cause* is what a diagnosis tool should report for the capture (for captures with
several TCP streams see `expected.tsv`, which has one row per stream).  *Command* is run as
`python3 captures/record/record.py --only <name>` from the repository root.

| file | software (client → server) | what it shows | cause | command |
| --- | --- | --- | --- | --- |
"""

README_TAIL = """
## `expected.tsv`

One row per TCP stream, tab-separated, with a header line.  Columns:

* `file` — capture file name;
* `tcp_stream` — the stream index exactly as tshark numbers it (`tcp.stream`);
* `client`, `server` — the software on each side (labels as in the table above;
  `esp32-fw-sim` = the raw-socket firmware re-creation);
* `client_addr`, `server_addr` — the addresses in the capture (`ip:port`, IPv6 in brackets);
* `method`, `target` — the first HTTP request in the stream (`none` if there is none,
  e.g. TLS bytes or a refused SYN);
* `status` — the first HTTP status code sent back (`none` if none);
* `expected_cause` — one of the cause names listed in the brief, or `none` for a good handshake.

tshark only dissects HTTP on the ports it knows; to look at these files use e.g.
`tshark -r F -d tcp.port==8000,http -d tcp.port==8003,http -Y 'http or websocket'`.

## Behaviour that differs from the spec / from what one might assume

{notes}
"""

NOTES = """* **`xiaozhi-http10-request`**: websockets 17.4 answers `505 HTTP Version Not Supported`
  (body `Failed to open a WebSocket connection: unsupported HTTP version: HTTP/1.0.`).  With 14.2
  (the version xiaozhi pins) the connection is closed without any response (spec section 2).
  The check happens *after* xiaozhi's `process_request` hook: an HTTP/1.0 request whose
  `Connection` is not `upgrade` gets the hook's 200 instead (see `nginx-http10-upstream`).
* **`nginx-http10-upstream`**: a bare `proxy_pass` makes nginx send `GET … HTTP/1.0` with
  `Connection: close` and no `Upgrade` upstream.  websockets 17.4 lets the request through its
  parser, the xiaozhi hook answers 200 `Server is running`, nginx relays the 200 to the client.
  With websockets 14.2 the HTTP/1.0 request line would be dropped by the parser and nginx would
  answer 502 (spec 1.2, last bullet) — that variant was **not** recorded.
* **`nginx-no-upgrade-forwarding-200`**: nginx forwards `Connection: close` and drops
  `Upgrade`; the backend's 200 reaches the client, re-headed by nginx
  (`Server: nginx/1.22.1`, `Connection: keep-alive`, the body `Server is running\\n` unchanged).
* **`xiaozhi-missing-host`**: websockets 17.4 does not require `Host`; the handshake succeeds
  (101 + hello), so the expected cause is `none` (a missing Host is not a failure for this server).
* **`tls-clienthello-to-plain-ws-port`**: websockets 17.4 closes (FIN) right after the ClientHello
  without any bytes — no `400` (field-failures.md mentions a possible 400; not seen here).
* **`plain-http-to-python-tls-port`**: Python's ssl/asyncio server answers a plain `GET` with a
  bare FIN — no TLS alert and no HTTP error (unlike nginx's 400 page).
* **`websockets-subprotocol-mismatch`**: websockets 17.4 `serve(subprotocols=["chat"])` rejects a
  client offering only `superchat` with **400**, body
  `Failed to open a WebSocket connection: invalid subprotocol; expected one of chat.` — it does
  not accept the connection without a subprotocol.
* **uvicorn 403s** (`starlette-wrong-path-403`, `starlette-close-before-accept-403`): uvicorn 0.54
  picks its `websockets-sansio` implementation (ws="auto" with websockets installed); the 403 has
  `Content-Length: 0`, `Content-Type: text/plain; charset=utf-8` and **no `Server` header**, so
  it cannot be fingerprinted by `Server:`.
* **`nginx-underscore-device-id`**: confirmed — the upstream request (stream 1) carries no
  `Device-Id`/`Device_Id` at all; the backend's `端口正常…` text and Close 1000 are relayed.
* **`xiaozhi-duplicate-connection-500`** (spec row 12b) and **`xiaozhi-duplicate-device-id-1011`**
  (row 11) behave exactly as the spec says.
* **Auth-failure timing**: the server's `认证失败` + Close and the client's hello cross on the wire;
  in some captures the client hello comes first, in others the server's text frame does.
* **`starlette-close-before-accept-403`**: cause labelled `proxy-rejected` for lack of a better name
  in the list: the application (not a proxy) refused the upgrade; uvicorn turns the close into 403.
* **`nginx-backend-down-502`**: labelled `proxy-rejected` (the proxy answered 502 because its
  upstream refused the connection); stream 1 is nginx's own SYN to the dead backend port answered
  by RST (`port-closed`).
* **`manager-api-wrong-service-200-json`** is an aiohttp stand-in for the Java manager-api: the
  body shape `{"code": 401, "msg": …}` is what spec 5 infers, but headers (`Server: Python/…
  aiohttp/…`) are aiohttp's, not Spring's.
* The OTA server is an aiohttp re-creation of the single-module OTA handler (response fields of
  spec 3.3/5); the 404 for `/xiaozhi/ota` is aiohttp's real one.
* **`netns-device-id-not-link-mac`** is the one capture not taken on loopback: two network
  namespaces (`wsdiag-rec-esp32`, `wsdiag-rec-server`) joined by a veth pair, 10.99.77.2 → 10.99.77.1,
  the device side's veth set to the Espressif MAC `24:0a:c4:12:34:56`, tcpdump on the server-side veth
  (Ethernet link layer).  The namespaces are deleted after the recording.  The handshake succeeds
  (the server never sees MACs), so the expected cause is `none`; wsdiag reports a `device-id-mismatch`
  **warning**.
* **`xiaozhi-non-uuid-client-id-good`**: expected cause `none`; wsdiag reports a `malformed-client-id`
  **warning**.  (The test page's `web_test_client`, in the query captures, is only an info finding.)
* **`xiaozhi-unbound-device-no-hello`**: the bind prompt frames are what `check_bind_device` →
  `send_stt_message` send (`json.dumps` defaults, so the Chinese text is `\\uXXXX`-escaped, and the
  trailing `。` is stripped), followed on the real server by the prompt audio (not sent here).  The
  client waits 2 s for the hello, the firmware 10 s; it then drops the socket (FIN, no Close frame) and
  websockets 17.4 closes without sending a Close frame either.
* **`xiaozhi-auth-failed-server-key-changed`**: the token verifies with `wsdiag-test-key`; the server's
  key is random.  Without `--auth-key` wsdiag can only say `auth-failed-after-upgrade`; with
  `--auth-key wsdiag-test-key` the cause stays `auth-failed-after-upgrade` and the finding adds that the
  token verifies with the given key, i.e. the server uses another key.
* **`xiaozhi-whitelist-case-miss`**: the capture alone shows a request without `Authorization` answered by
  `认证失败` (`missing-token`); the whitelist's letter case is named only when wsdiag is given the
  server's config (`--server-config` with `allowed_devices`).
* **`xiaozhi-post-405`**: websockets 17.4 answers 405 `unsupported HTTP method: POST.`; with 14.2 the
  request would be dropped without a response (spec row 15).  wsdiag names it `malformed-request`.
* **`ota-manager-api-invalid-device-id`**: an aiohttp stand-in for the manager-api OTA (Device-Id regex of
  spec 5, compact JSON like Jackson); headers are aiohttp's, not Spring's.
* **`websockets-client-bad-accept`**: the server computes `Sec-WebSocket-Accept` as base64(SHA-1(key)),
  without the RFC 6455 GUID; websockets 17.4 raises `InvalidHeaderValue` and closes the TCP connection
  (FIN) without sending any frame.
"""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=str(HERE.parent))
    ap.add_argument("--check-only", action="store_true")
    args = ap.parse_args()
    cap = Path(args.dir)
    meta = {s.name: s for s in record.SCENARIOS}
    run_info = json.loads((HERE / "last-run.json").read_text()) if (HERE / "last-run.json").exists() else {}
    tsv = ["\t".join(["file", "tcp_stream", "client", "server", "client_addr", "server_addr", "method",
                      "target", "status", "expected_cause"])]
    rows = []
    bad = 0
    for name, sc in meta.items():
        pcap = cap / f"{name}.pcap"
        if not pcap.exists():
            print(f"MISSING {pcap}")
            bad += 1
            continue
        streams = analyse(pcap)
        size = pcap.stat().st_size
        print(f"== {pcap.name} ({size} B)")
        if len(streams) != len(sc.streams):
            print(f"   !! {len(streams)} streams, metadata says {len(sc.streams)}")
            bad += 1
        if size > 50_000:
            print("   !! larger than 50 KB")
            bad += 1
        for (idx, st), m in zip(streams.items(), sc.streams, strict=False):
            fl = ",".join(sorted(st["flags"]))
            print(f"   stream {idx}: {st['client']} -> {st['server']} {st['method']} {st['target']} "
                  f"status={st['status']} tls={st['tls']} flags={fl} frames={' '.join(st['frames'])[:160]}")
            tsv.append("\t".join([pcap.name, str(idx), m.client, m.server, st["client"], st["server"],
                                  st["method"], st["target"], st["status"], m.cause]))
        causes = ", ".join(dict.fromkeys(m.cause for m in sc.streams))
        vers = run_info.get("versions", {})
        used = []
        low = sc.software.lower()
        if "xiaozhi-like" in low or "websockets" in low or "uvicorn" in low:
            used.append(f"websockets {vers.get('websockets', '?')}")
        if "aiohttp" in low:
            used.append(f"aiohttp {vers.get('aiohttp', '?')}")
        if "uvicorn" in low:
            used += [f"uvicorn {vers.get('uvicorn', '?')}", f"starlette {vers.get('starlette', '?')}"]
        if "nginx" in low:
            used.append(f"nginx {vers.get('nginx', '?')}")
        if "tls" in sc.name or "ssl" in low or "wss" in low:
            used.append(vers.get("openssl", "OpenSSL"))
        software = sc.software + (f" ({', '.join(used)}; Python {vers.get('python', '?')})" if used else "")
        rows.append(f"| `{pcap.name}` | {software} | {sc.shows} | {causes} | "
                    f"`record.py --only {name}` |")
    if args.check_only:
        return 1 if bad else 0
    (cap / "expected.tsv").write_text("\n".join(tsv) + "\n")
    versions = run_info.get("versions", {})
    vlines = "\n".join(f"* {k}: {v}" for k, v in versions.items()) or "* (run record.py to fill in)"
    readme = (README_HEAD.format(versions=vlines, ws_version=versions.get("websockets", "17.4"))
              + "\n".join(rows) + "\n" + README_TAIL.format(notes=NOTES))
    (cap / "README.md").write_text(readme)
    print(f"wrote expected.tsv ({len(tsv) - 1} rows) and README.md; {bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
