"""Wireshark's dissection as a second engine: tshark found through pyshark, run once per file.

Two uses. `decrypted_rows` asks tshark (with a key log) for the decrypted TLS application bytes
of every frame, which `analyzer.tls.decrypt` feeds to our own handshake model. `harvest` is the
`--engine tshark` path: Wireshark's TCP reassembly and HTTP/WebSocket/TLS dissectors build the
same `Handshake`s our engine builds, so `analyzer.crosscheck` can compare the two.

Why tshark as a subprocess with `-T ek` rather than pyshark's packet objects: pyshark locates the
binary and its version (and honours its config), but iterating its packet objects costs about
20 ms per packet (0.7 s for the 32-packet zeek/tls-1.2-stream-keylog capture) where one
`tshark -T ek -e …` run streams only the fields we need (0.3 s for that capture, any size at a
few µs per packet). Key log paths go to tshark as a preference; the keys themselves never pass
through wsdiag's output, and tshark's stderr is never echoed.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from analyzer.errors import WsdiagError
from analyzer.handshake import connect_answer, is_attempt, is_ota, promoted_by_answer
from analyzer.limits import Limits
from analyzer.model import (
    Anomaly,
    CertInfo,
    Endpoint,
    Handshake,
    HttpRequest,
    HttpResponse,
    InputSummary,
    OtaExchange,
    Payload,
    TcpFlags,
    TlsAlert,
    TlsDetails,
    Transport,
    WsFrame,
)
from analyzer.pipeline import Harvest

INSTALL_HINT = (
    "tshark (Wireshark's command-line tool) is needed for this; install it: "
    "Debian/Ubuntu `sudo apt install tshark`, Fedora `sudo dnf install wireshark-cli`, "
    "macOS `brew install wireshark`, Windows the installer from https://www.wireshark.org/download.html"
)
TIMEOUT_S = 600


class TsharkMissing(WsdiagError):
    """tshark is not installed (or not where pyshark looks): the message says how to get it."""


class TsharkFailed(WsdiagError):
    pass


@cache
def tshark_path() -> str | None:
    """Where tshark is, as pyshark finds it (PATH, pyshark's config.ini, the usual install dirs)."""
    try:
        from pyshark.tshark.tshark import get_process_path

        return str(get_process_path())
    except Exception:  # pyshark raises its own TSharkNotFoundException, or fails to import
        import shutil

        return shutil.which("tshark")


def require_tshark() -> str:
    path = tshark_path()
    if path is None:
        raise TsharkMissing(INSTALL_HINT)
    return path


def tshark_version() -> str | None:
    path = tshark_path()
    if path is None:
        return None
    try:
        from pyshark.tshark.tshark import get_tshark_version

        return str(get_tshark_version(path))
    except Exception:
        return None


def run_ek(
    capture: str,
    fields: list[str],
    display_filter: str | None = None,
    keylog: str | None = None,
    disable: tuple[str, ...] = (),
    warnings: list[str] | None = None,
    decode_as: tuple[str, ...] = (),
) -> Iterator[dict[str, list[str]]]:
    """One `layers` dict per packet (field name → values, dots as in Wireshark), streamed.

    tshark exits non-zero on a damaged or cut file after dissecting what it could read; when
    `warnings` is given, that message goes there instead of raising (with whatever came out).
    """
    argv = [require_tshark(), "-r", capture, "-n", "-T", "ek"]
    if keylog:
        argv += ["-o", f"tls.keylog_file:{keylog}"]
    for proto in disable:
        argv += ["--disable-protocol", proto]
    for rule in decode_as:  # "tcp.port==17500,tls"
        argv += ["-d", rule]
    if display_filter:
        argv += ["-Y", display_filter]
    for f in fields:
        argv += ["-e", f]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    names = {f.replace(".", "_"): f for f in fields}
    count = 0
    try:
        for line in proc.stdout:
            if not line.startswith(b'{"timestamp"'):
                continue
            layers = json.loads(line).get("layers", {})
            count += 1
            yield {names.get(k, k): v for k, v in layers.items()}
    finally:
        proc.stdout.close()
        err = proc.stderr.read().decode("utf-8", "replace")
        proc.stderr.close()
        code = proc.wait(TIMEOUT_S)
    if code != 0 and code != -13:  # -13: we stopped reading early (SIGPIPE)
        first = next((ln for ln in err.splitlines() if ln.strip() and "Running as user" not in ln), "")
        message = f"tshark could not read {capture} to the end: {first[:200]}"
        if warnings is None:
            raise TsharkFailed(message)
        warnings.append(message)


def one(row: dict[str, list[str]], name: str) -> str | None:
    v = row.get(name)
    return v[0] if v else None


def ints(row: dict[str, list[str]], name: str) -> list[int]:
    out = []
    for v in row.get(name, []):
        try:
            out.append(int(v, 0))
        except ValueError:
            continue
    return out


def ts_ns(row: dict[str, list[str]]) -> int:
    """`frame.time_epoch` ("1620772652.458147000") as integer nanoseconds, without float loss."""
    s = one(row, "frame.time_epoch") or "0"
    sec, _, frac = s.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def last(row: dict[str, list[str]], name: str) -> str | None:
    v = row.get(name)
    return v[-1] if v else None


def endpoints(row: dict[str, list[str]]) -> tuple[Endpoint, Endpoint] | None:
    """The innermost IP addresses (a tunnel's outer header comes first) and the TCP ports."""
    src = last(row, "ipv6.src") or last(row, "ip.src")
    dst = last(row, "ipv6.dst") or last(row, "ip.dst")
    sport, dport = one(row, "tcp.srcport"), one(row, "tcp.dstport")
    if not (src and dst and sport and dport):
        return None
    return Endpoint(src, int(sport)), Endpoint(dst, int(dport))


ADDR_FIELDS = ["ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "tcp.srcport", "tcp.dstport"]
BASE_FIELDS = ["frame.number", "frame.time_epoch", "tcp.stream", *ADDR_FIELDS]
TLS_FIELDS = [
    "tls.record.content_type",
    "tls.record.opaque_type",
    "tls.handshake.type",
    "tls.handshake.version",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str",
    "tls.handshake.ciphersuite",
    "tls.handshake.certificate",
    "tls.alert_message.level",
    "tls.alert_message.desc",
]
ENGINE_FIELDS = [
    *BASE_FIELDS,
    "eth.src",
    "eth.dst",
    "tcp.flags",
    "tcp.len",
    *TLS_FIELDS,
    "http.request.method",
    "http.request.uri",
    "http.request.version",
    "http.request.line",
    "http.response.code",
    "http.response.phrase",
    "http.response.version",
    "http.response.line",
    "http.file_data",
    "websocket.fin",
    "websocket.rsv",
    "websocket.opcode",
    "websocket.mask",
    "websocket.payload_length",
    "websocket.payload_length_ext_16",
    "websocket.payload_length_ext_64",
    "websocket.payload.text",
    "websocket.payload.close.status_code",
    "websocket.payload.close.reason",
]


def header_lines(lines: list[str]) -> tuple[tuple[str, str], ...]:
    """Wireshark's `http.*.line` values ("Name: value\\r\\n") as (name, value) in wire order."""
    out = []
    for line in lines:
        line = line.removesuffix("\n").removesuffix("\r")
        name, sep, value = line.partition(":")
        if sep:
            out.append((name, value.strip(" \t")))
    return tuple(out)


# ---- the tshark engine -------------------------------------------------------------------------


@dataclass(slots=True)
class _Stream:
    """What Wireshark showed for one `tcp.stream`."""

    number: int
    a: Endpoint
    b: Endpoint
    client: Endpoint | None = None
    flags: dict[Endpoint, int] = field(default_factory=dict)  # OR of TCP flags per sender
    syn_only: dict[Endpoint, int] = field(default_factory=dict)  # SYN (no ACK) count per sender
    nbytes: dict[Endpoint, int] = field(default_factory=dict)
    payload: dict[Endpoint, Payload] = field(default_factory=dict)
    first_ns: int = 0
    last_ns: int = 0
    messages: list[tuple[Endpoint, HttpRequest | HttpResponse]] = field(default_factory=list)
    frames: list[tuple[Endpoint, WsFrame]] = field(default_factory=list)
    tls: dict[str, Any] = field(default_factory=dict)
    macs: dict[Endpoint, str] = field(default_factory=dict)

    def roles(self) -> tuple[Endpoint, Endpoint]:
        """(client, server): the one seen acting as client, else the higher port's side."""
        client = self.client or (self.a if self.a.port > self.b.port else self.b)
        return client, (self.b if client == self.a else self.a)


def harvest(path: str, summary: InputSummary, limits: Limits, keylog: str | None = None) -> Harvest:
    """The whole capture through Wireshark's dissectors, as a `Harvest` of our model types."""
    streams: dict[int, _Stream] = {}
    warnings: list[str] = []
    for row in run_ek(path, ENGINE_FIELDS, "tcp", keylog, warnings=warnings):
        summary.packets += 1
        summary.tcp_segments += 1
        number = one(row, "tcp.stream")
        eps = endpoints(row)
        if number is None or eps is None:
            continue
        st = streams.get(int(number))
        if st is None:
            st = streams[int(number)] = _Stream(int(number), eps[0], eps[1])
            st.first_ns = ts_ns(row)
        _packet(st, row, eps[0], eps[1], limits)
    summary.format = "tshark"
    if warnings:
        summary.readable_to_end = False
        summary.anomalies.append(Anomaly("capture-truncated", warnings[0]))
    out = Harvest()
    for st in sorted(streams.values(), key=lambda s: s.number):
        hss, otas, transport = _results(st, limits)
        out.finished(*st.roles(), transport)
        out.handshakes += hss
        out.otas += otas
    return out


def _packet(st: _Stream, row: dict[str, list[str]], src: Endpoint, dst: Endpoint, limits: Limits) -> None:
    frame = int(one(row, "frame.number") or 0)
    t = ts_ns(row)
    st.last_ns = max(st.last_ns, t)
    flags = int(one(row, "tcp.flags") or "0", 16)
    st.flags[src] = st.flags.get(src, 0) | flags
    if flags & (TcpFlags.SYN | TcpFlags.ACK) == TcpFlags.SYN:
        st.syn_only[src] = st.syn_only.get(src, 0) + 1
        st.client = st.client or src
    elif flags & (TcpFlags.SYN | TcpFlags.ACK) == TcpFlags.SYN | TcpFlags.ACK:
        st.client = st.client or dst
    mac = one(row, "eth.src")
    if mac and src not in st.macs:
        st.macs[src] = mac
    nbytes = int(one(row, "tcp.len") or 0)
    st.nbytes[src] = st.nbytes.get(src, 0) + nbytes
    is_tls = "tls.record.content_type" in row or "tls.record.opaque_type" in row
    hs_types = ints(row, "tls.handshake.type")
    if 1 in hs_types:
        st.client = st.client or src
    if nbytes and src not in st.payload:
        http = "http.request.method" in row or "http.response.code" in row
        st.payload[src] = Payload.HTTP if http else Payload.TLS if is_tls else Payload.OTHER
    if is_tls:
        _tls(st, row, src, frame)
    if "http.request.method" in row:
        st.client = st.client or src
        req = HttpRequest(
            one(row, "http.request.method") or "",
            one(row, "http.request.uri") or "",
            one(row, "http.request.version") or "",
            header_lines(row.get("http.request.line", [])),
            (one(row, "http.file_data") or "").encode("utf-8", "surrogateescape")[: limits.max_body_bytes],
            ts_ns=t,
            frames=(frame,),
        )
        st.messages.append((src, req))
    if "http.response.code" in row:
        resp = HttpResponse(
            one(row, "http.response.version") or "",
            int(one(row, "http.response.code") or 0),
            one(row, "http.response.phrase") or "",
            header_lines(row.get("http.response.line", [])),
            (one(row, "http.file_data") or "").encode("utf-8", "surrogateescape")[: limits.max_body_bytes],
            ts_ns=t,
            frames=(frame,),
        )
        st.messages.append((src, resp))
    if "websocket.opcode" in row:
        st.frames += [(src, f) for f in _ws_frames(row, src == st.client, t, frame, limits)]


def _ws_frames(
    row: dict[str, list[str]], from_client: bool, t: int, frame: int, limits: Limits
) -> list[WsFrame]:
    texts = iter(row.get("websocket.payload.text", []))
    codes = iter(ints(row, "websocket.payload.close.status_code"))
    reasons = iter(row.get("websocket.payload.close.reason", []))
    fins = row.get("websocket.fin", [])
    masks = row.get("websocket.mask", [])
    rsvs = ints(row, "websocket.rsv")
    lens = ints(row, "websocket.payload_length")
    ext16 = iter(ints(row, "websocket.payload_length_ext_16"))
    ext64 = iter(ints(row, "websocket.payload_length_ext_64"))
    out = []
    for i, op in enumerate(ints(row, "websocket.opcode")):
        n = lens[i] if i < len(lens) else 0
        if n == 126:
            n = next(ext16, n)
        elif n == 127:
            n = next(ext64, n)
        rsv = rsvs[i] if i < len(rsvs) else 0
        payload, code, reason = b"", None, None
        if op == 1:
            payload = next(texts, "").encode("utf-8", "surrogateescape")[: limits.max_frame_payload]
        elif op == 8:
            code = next(codes, None)
            reason = next(reasons, None) if code is not None else None
        out.append(
            WsFrame(
                "client" if from_client else "server",
                t,
                frame,
                (fins[i] if i < len(fins) else "1") in ("1", "True", "true"),
                bool(rsv & 4),
                bool(rsv & 2),
                bool(rsv & 1),
                op,
                (masks[i] if i < len(masks) else "0") in ("1", "True", "true"),
                n,
                payload,
                close_code=code,
                close_reason=reason,
            )
        )
    return out


def _tls(st: _Stream, row: dict[str, list[str]], src: Endpoint, frame: int) -> None:
    d = st.tls
    types = ints(row, "tls.handshake.type")
    if 1 in types:
        d["client_random_side"] = src
        d.setdefault("sni", one(row, "tls.handshake.extensions_server_name"))
        sv = [v for v in ints(row, "tls.handshake.extensions.supported_version") if v & 0x0F0F != 0x0A0A]
        d.setdefault("offered", sv or ints(row, "tls.handshake.version")[:1])
        d.setdefault("alpn_offered", row.get("tls.handshake.extensions_alpn_str", []))
    if 2 in types:
        d["server_hello"] = True
        sv = ints(row, "tls.handshake.extensions.supported_version")
        d.setdefault("version", sv[-1] if sv else (ints(row, "tls.handshake.version") or [0])[-1])
        alpn = row.get("tls.handshake.extensions_alpn_str", [])
        if alpn:
            d.setdefault("alpn", alpn[-1])
    if 11 in types and "certs" not in d:
        d["certs"] = [bytes.fromhex(h.replace(":", "")) for h in row.get("tls.handshake.certificate", [])]
    levels = ints(row, "tls.alert_message.level")
    descs = ints(row, "tls.alert_message.desc")
    for lvl, desc in zip(levels, descs, strict=False):
        d.setdefault("alerts", []).append((src, lvl, desc, frame))
    records = ints(row, "tls.record.content_type").count(23) + len(row.get("tls.record.opaque_type", []))
    if records:
        key = "app_client" if src == st.client else "app_server"
        d[key] = d.get(key, 0) + records


def _tls_details(st: _Stream, client: Endpoint) -> TlsDetails | None:
    from analyzer.tls.records import version_name

    d = st.tls
    if not d:
        return None
    certs: tuple[CertInfo, ...] = ()
    if d.get("certs"):
        from analyzer.tls.certs import parse_chain

        certs = parse_chain(d["certs"])
    version = version_name(d["version"]) if d.get("version") else None
    alerts = tuple(
        TlsAlert("client" if src == client else "server", lvl, desc, frame)
        for src, lvl, desc, frame in d.get("alerts", [])
    )
    return TlsDetails(
        offered_versions=tuple(version_name(v) for v in d.get("offered", [])),
        version=version,
        sni=d.get("sni"),
        alpn_offered=tuple(d.get("alpn_offered", [])),
        alpn=d.get("alpn"),
        certificates=certs,
        certificates_hidden=version == "TLS 1.3",
        alerts=alerts,
        client_app_records=d.get("app_client", 0),
        server_app_records=d.get("app_server", 0),
        completed=bool(d.get("app_client")) and bool(d.get("app_server")),
    )


def _results(st: _Stream, limits: Limits) -> tuple[list[Handshake], list[OtaExchange], Transport]:
    client, server = st.roles()
    cf, sf = st.flags.get(client, 0), st.flags.get(server, 0)
    tls = _tls_details(st, client)
    cpay, spay = st.payload.get(client, Payload.NONE), st.payload.get(server, Payload.NONE)
    if tls is not None and cpay is Payload.TLS and st.messages:
        # HTTP inside TLS: tshark decrypted it; describe the inside, as our engine does
        tls = dataclasses.replace(tls, decrypted=True)
        senders = {src for src, _ in st.messages}
        cpay = Payload.HTTP if client in senders else cpay
        spay = Payload.HTTP if server in senders else spay
    first_alert = next((a for a in tls.alerts if a.description != 0), None) if tls else None
    transport = Transport(
        syn=bool(cf & TcpFlags.SYN),
        syn_ack=bool(sf & TcpFlags.SYN),
        client_fin=bool(cf & TcpFlags.FIN),
        server_fin=bool(sf & TcpFlags.FIN),
        client_rst=bool(cf & TcpFlags.RST),
        server_rst=bool(sf & TcpFlags.RST),
        midstream=not (cf & TcpFlags.SYN or sf & TcpFlags.SYN),
        client_payload=cpay,
        server_payload=spay,
        client_bytes=st.nbytes.get(client, 0),
        server_bytes=st.nbytes.get(server, 0),
        first_ns=st.first_ns,
        last_ns=st.last_ns,
        syn_retries=max(0, st.syn_only.get(client, 0) - 1),
        tls_server_hello=bool(st.tls.get("server_hello")),
        tls_alert=(first_alert.level, first_alert.description) if first_alert else None,
        tls_alert_by=first_alert.by if first_alert else None,
        tls_sni=tls.sni if tls else None,
        tls=tls if st.payload.get(client) is Payload.TLS else None,
    )
    # [request | None, response | None, frames, ota, tunnel]; the same choices as the built-in
    # engine (handshake.Conversation): CONNECT tunnels, plain GETs that hit a WebSocket endpoint
    attempts: list[list[Any]] = []
    waiting: list[list[Any]] = []
    upgraded: list[Any] | None = None
    tunnel: str | None = None
    for _src, msg in st.messages:
        if isinstance(msg, HttpRequest):
            connect = msg.method.upper() == "CONNECT"
            new: list[Any] = [msg, None, [], is_ota(msg) and not is_attempt(msg), tunnel]
            if connect or is_attempt(msg) or is_ota(msg):
                attempts.append(new)
            waiting.append(new)
        else:
            if 100 <= msg.status < 200 and msg.status != 101:
                continue
            att: list[Any] | None
            if waiting:
                att = waiting.pop(0)
                if not any(a is att for a in attempts):  # a plain request
                    if promoted_by_answer(att[0], msg):
                        attempts.append(att)
                    else:
                        att = None
            elif msg.status == 101 or transport.client_payload is Payload.TLS:
                att = [None, None, [], False, tunnel]
                attempts.append(att)
            else:
                att = None
            if att is not None:
                att[1] = msg
                if msg.status == 101:
                    upgraded = att
                req = att[0]
                if req is not None and req.method.upper() == "CONNECT":
                    drop, opened = connect_answer(req, msg.status)
                    if drop:
                        attempts = [a for a in attempts if a is not att]
                    tunnel = opened or tunnel
    if upgraded is not None:
        upgraded[2] = [f for _, f in st.frames][: 2 * limits.max_frames]
    handshakes, otas = [], []
    cmac, smac = st.macs.get(client), st.macs.get(server)
    for req, resp, frames, ota, through in attempts:
        if ota:
            otas.append(OtaExchange(st.number, client, server, req, resp, cmac))
        else:
            handshakes.append(
                Handshake(
                    st.number, client, server, transport, req, resp, tuple(frames), cmac, smac, tunnel=through
                )
            )
    if not handshakes and _failed_without_http(transport):
        handshakes.append(Handshake(st.number, client, server, transport, None, None, (), cmac, smac))
    return handshakes, otas, transport


def _failed_without_http(t: Transport) -> bool:
    """The same test as `Conversation._failed_without_http`, on Wireshark's facts."""
    from analyzer.tls.session import handshake_failed

    if t.client_payload is Payload.TLS:
        return not t.tls_server_hello or (t.tls is not None and handshake_failed(t.tls))
    return t.client_payload is Payload.NONE and t.syn and (not t.syn_ack or t.server_rst)
