"""WS4xx: the OTA answer's `websocket.url` against the connection the device opens next."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from analyzer.model import Finding, Handshake, OtaExchange, Outcome, Severity
from analyzer.rules._facts import (
    HandshakeIndex,
    describe_answer,
    json_body,
    ota_for,
    ota_time,
    ota_websocket,
    path_of,
)
from analyzer.rules._rule import Context, Hit, Rule, rule, sort_key
from analyzer.rules.request import wrong_path
from analyzer.rules.xiaozhi import malformed_device_id, missing_client_id, missing_device_id

PLACEHOLDER_HOST = "xiaozhi.server.com"
DOCKER_BRIDGES = ipaddress.ip_network("172.16.0.0/12")


@dataclass(frozen=True, slots=True)
class WsUrl:
    raw: str
    scheme: str
    host: str
    port: int
    path: str


def parse_ws_url(raw: object) -> WsUrl | None:
    if not isinstance(raw, str) or not raw.strip():
        return None
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("ws", "wss", "http", "https") or not parts.hostname:
        return None
    default = 443 if parts.scheme in ("wss", "https") else 80
    return WsUrl(raw.strip(), parts.scheme, parts.hostname.lower(), port or default, parts.path or "/")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def unreachable_reason(host: str, device_ip: str) -> str | None:
    """Why a device at `device_ip` cannot reach `host`, or None when it may."""
    if host == PLACEHOLDER_HOST:
        return "the placeholder xiaozhi.server.com (manager-api parameter server.websocket is not set)"
    addr, dev = _ip(host), _ip(device_ip)
    if host == "localhost" or (addr is not None and addr.is_loopback):
        return (
            None
            if dev is not None and dev.is_loopback
            else "a loopback address, reachable only on the server"
        )
    if addr is not None and addr.is_unspecified:
        return "0.0.0.0, a bind address, not one a device can connect to"
    if isinstance(addr, ipaddress.IPv4Address) and addr in DOCKER_BRIDGES and addr.packed[1] >= 17:
        same_net = dev is not None and (
            dev.is_loopback or (isinstance(dev, ipaddress.IPv4Address) and dev in DOCKER_BRIDGES)
        )
        return (
            None if same_net else "a Docker bridge address (the container's own IP, auto-detected inside it)"
        )
    return None


def _ota_url(hs: Handshake, ctx: Context) -> tuple[OtaExchange, WsUrl] | None:
    ota = ota_for(hs, ctx.lookup.otas)
    ws = ota_websocket(ota) if ota is not None else None
    url = parse_ws_url(ws.get("url")) if ws is not None else None
    return (ota, url) if ota is not None and url is not None else None


def _goes_to(hs: Handshake, url: WsUrl) -> bool:
    host_header = (hs.request.header("host") or "") if hs.request is not None else ""
    host = host_header.rsplit(":", 1)[0].strip("[]").lower() if host_header else ""
    return hs.server.ip == url.host or host == url.host


@rule(
    "WS401",
    "ota-url-unreachable",
    Severity.ERROR,
    rank=15,
    title="The OTA answer hands out a WebSocket URL the device cannot reach",
    fix="Set the manager-api parameter server.websocket (or server.websocket in config.yaml) to "
    "ws://<address the device reaches>:8000/xiaozhi/v1/.",
)
def ota_url_unreachable(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The `websocket.url` of the device's last OTA answer names the placeholder
    `xiaozhi.server.com`, a loopback address, `0.0.0.0` or a Docker bridge address (172.17-31.x)
    that the device is not on. Reported on the handshake that follows and, when no WebSocket
    attempt follows at all, on the OTA exchange itself.

    Why it is refused:
    The device connects wherever OTA says: the placeholder does not resolve, a loopback or
    container address is not reachable from the LAN. The ESP32 then logs a DNS or TCP failure,
    which looks like a server problem.

    Example:
    OTA answer `"websocket":{"url":"ws://172.18.0.2:8000/xiaozhi/v1/"}` → SYNs to 172.18.0.2
    unanswered.

    Fix:
    Configure the public/LAN URL in `server.websocket`.

    References:
    manager-api `DeviceServiceImpl`; xiaozhi-server `core/api/ota_handler.py`; xiaozhi-protocol.md §5,
    §6 row 21; field-failures A1, A5.
    """
    found = _ota_url(hs, ctx)
    if found is None:
        return
    ota, url = found
    reason = unreachable_reason(url.host, ota.client.ip)
    if reason is None:
        return
    if _goes_to(hs, url) and hs.outcome != Outcome.UPGRADED:
        yield Hit(
            f"the OTA answer sent the device to {url.raw}: {reason}",
            evidence=f"OTA websocket.url {url.raw}",
            rank=5,  # the root cause behind this very attempt's no-answer/port-closed
        )
    else:
        yield Hit(
            f"the OTA answer before this handshake named {url.raw}: {reason}",
            evidence=f"OTA websocket.url {url.raw}",
            severity=Severity.WARNING,
            rank=50,
        )


def _differences(hs: Handshake, url: WsUrl) -> list[str]:
    diffs = []
    if not _goes_to(hs, url) and _ip(url.host) is not None:
        diffs.append(f"host {hs.server.ip} instead of {url.host}")
    elif not _goes_to(hs, url) and hs.request is not None and hs.request.header("host"):
        diffs.append(f"Host {hs.request.header('host')} instead of {url.host}")
    if hs.server.port != url.port:
        diffs.append(f"port {hs.server.port} instead of {url.port}")
    if hs.request is not None and path_of(hs.request) != url.path:
        diffs.append(f"path {path_of(hs.request)} instead of {url.path}")
    return diffs


@rule(
    "WS402",
    "ota-url-mismatch",
    Severity.ERROR,
    rank=25,
    title="The device connected somewhere else than the OTA answer (or server config) said",
    fix="Make the device use the OTA-provided URL (firmware ≥ 1.6.2 does; older firmware and desktop "
    "clients keep their own URL), or fix server.websocket.",
)
def ota_url_mismatch(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The host, port or path of this handshake against the `websocket.url` of the same device's
    last OTA answer (by Device-Id, else client IP), or against `server.websocket` from
    `--server-config` when no OTA exchange was captured.

    Why it is refused:
    A device that ignores the OTA URL (old firmware with a Kconfig URL, a desktop client's own
    config, a stale NVS value) talks to another server or port, with a token the other server
    did not issue. A different host alone may be NAT or port mapping, so it is only an error
    when the handshake failed.

    Example:
    OTA `ws://192.168.1.10:8000/xiaozhi/v1/`, handshake to `192.168.1.10:8002`.

    Fix:
    Let the device take the URL from OTA; keep server.websocket correct.

    References:
    xiaozhi-protocol.md §3.3, §3.4, §5; field-failures A1.
    """
    found = _ota_url(hs, ctx)
    source = "the OTA answer"
    url = found[1] if found is not None else None
    if url is None and ctx.config.configured_ws_url:
        url, source = parse_ws_url(ctx.config.configured_ws_url), "server.websocket"
    if url is None:
        return
    diffs = _differences(hs, url)
    if not diffs:
        return
    failed = hs.outcome != Outcome.UPGRADED
    only_path = all(d.startswith("path") for d in diffs)
    sev = Severity.ERROR if failed and not only_path else Severity.WARNING
    yield Hit(
        f"{source} says {url.raw}, the device connected with " + ", ".join(diffs),
        evidence=f"{source}: {url.raw}",
        severity=sev,
        rank=25 if sev == Severity.ERROR else 55,
    )


def next_handshake(ota: OtaExchange, handshakes: HandshakeIndex) -> Handshake | None:
    """The first handshake after `ota` from the same device (Device-Id, else client IP)."""
    dev = (ota.request.header("device-id") or "").strip().lower()
    start = ota_time(ota)
    for ts, _dev, _ip, hs in handshakes.same_device(dev, ota.client.ip):
        if not (start and ts and ts < start):
            return hs
    return None


def _ota_host(ota: OtaExchange) -> str:
    host = ota.request.header("host") or ""
    name = host.rsplit(":", 1)[0].strip("[]").lower() if host and not host.endswith("]") else host.strip("[]")
    return name or ota.server.ip


def _ota_url_hits(ota: OtaExchange, handshakes: HandshakeIndex) -> Iterator[tuple[Rule, Hit]]:
    ws = ota_websocket(ota)
    url = parse_ws_url(ws.get("url")) if ws is not None else None
    if url is None:
        return
    follow = next_handshake(ota, handshakes)
    tail = "; no WebSocket attempt from this device followed in the capture" if follow is None else ""
    evidence = f"OTA websocket.url {url.raw}"
    reason = unreachable_reason(url.host, ota.client.ip)
    if reason is not None:
        yield (
            ota_url_unreachable,
            Hit(f"the OTA answer hands out {url.raw}: {reason}{tail}", evidence=evidence),
        )
        return
    addr = _ip(url.host)
    reached = {ota.server.ip, _ota_host(ota)}
    if isinstance(addr, ipaddress.IPv4Address) and addr in DOCKER_BRIDGES and url.host not in reached:
        msg = (
            f"the OTA was reached at {ota.server.ip} but hands out {url.raw}, a Docker-internal address "
            f"(auto-detected inside the container): devices elsewhere cannot reach it{tail}"
        )
        yield ota_url_mismatch, Hit(msg, evidence=evidence)


def _ota_request_hits(ota: OtaExchange) -> Iterator[tuple[Rule, Hit]]:
    """What the OTA endpoint refused about the request itself (spec §5, §6 rows 19-20)."""
    resp, req = ota.response, ota.request
    if resp is None:
        return
    path = path_of(req)
    if resp.status == 404:
        hint = f": use {path}/ (aiohttp does not add the slash)" if not path.endswith("/") else ""
        yield (
            wrong_path,
            Hit(
                f"the OTA endpoint answered 404 for {path}{hint}; the device then never opens the WebSocket",
                evidence=describe_answer(resp),
                rank=10,
            ),
        )
        return
    obj = json_body(resp.body)
    refused = isinstance(obj, dict) and (obj.get("success") is False or "error" in obj)
    if not refused:
        return
    said = describe_answer(resp)
    device = req.header("device-id")
    if not device:
        yield (
            missing_device_id,
            Hit("the OTA request has no Device-Id and was refused", evidence=said, rank=10),
        )
    elif isinstance(obj, dict) and "Invalid device ID" in str(obj.get("error")):
        yield (
            malformed_device_id,
            Hit(
                f"the OTA refused Device-Id {device!r} as not a MAC",
                evidence=said,
                severity=Severity.ERROR,
                rank=10,
            ),
        )
    elif not req.header("client-id"):
        yield (
            missing_client_id,
            Hit(
                "the OTA request has no Client-Id and the single-module OTA refused it",
                evidence=said,
                severity=Severity.ERROR,
                rank=10,
            ),
        )


def ota_findings(ota: OtaExchange, handshakes: HandshakeIndex) -> tuple[Finding, ...]:
    """Findings on an OTA exchange itself (reported even when no WebSocket attempt followed)."""
    hits = [*_ota_request_hits(ota), *_ota_url_hits(ota, handshakes)]
    return tuple(sorted((r.finding(h) for r, h in hits), key=sort_key))


RULES = (ota_url_unreachable, ota_url_mismatch)
