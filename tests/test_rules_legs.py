"""WS601: both legs of an attempt through a proxy, paired and compared (rules/legs.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from factories import MS, T0, diag, make_handshake, make_request, make_response, switching

from analyzer.model import Diagnosis, Endpoint, Handshake, Severity

ROOT = Path(__file__).resolve().parent.parent
PROXY = Endpoint("192.168.1.10", 8080)
BACKEND = Endpoint("172.17.0.2", 8000)


def legs(up_headers: dict[str, str | None], **up_request: Any) -> tuple[Handshake, Handshake]:
    """The device's request to a proxy, and the proxy's copy of it to the backend 1 ms later."""
    down = make_handshake(server=PROXY, response=make_response(403, "no", server="nginx/1.22.1"))
    request = make_request(set_headers=up_headers, ts_ns=T0 + MS, **up_request)
    up = make_handshake(
        request, tcp_stream=1, client=Endpoint("172.17.0.1", 40000), server=BACKEND, response=switching()
    )
    return down, up


def leg_finding(d: Diagnosis) -> tuple[Severity, str] | None:
    found = [f for f in d.findings if f.name == "proxy-changed-request"]
    return (found[0].severity, found[0].message) if found else None


def test_dropped_identity_header_is_named_on_both_legs() -> None:
    down, up = legs({"Device-Id": None, "X-Real-IP": "192.168.1.23"})
    on_down = leg_finding(diag(down, others=[up]))
    on_up = leg_finding(diag(up, others=[down]))
    assert on_down is not None and on_up is not None
    assert on_down[0] == on_up[0] == Severity.WARNING
    assert "forwarded this request to 172.17.0.2:8000 (tcp.stream 1): dropped `Device-Id`" in on_down[1]
    assert "added `X-Real-IP`" in on_down[1] and "backend answered HTTP 101" in on_down[1]
    assert (
        "proxy's copy of the request 192.168.1.23:51234 sent to 192.168.1.10:8080 (tcp.stream 0)" in on_up[1]
    )


def test_lost_upgrade_and_http10_upstream() -> None:
    down, up = legs({"Upgrade": None, "Connection": "close"}, version="HTTP/1.0")
    found = leg_finding(diag(down, others=[up]))
    assert found is not None
    assert "dropped `Upgrade`" in found[1] and "`Connection` 'Upgrade' → 'close'" in found[1]
    assert "HTTP/1.1 → HTTP/1.0" in found[1]


def test_a_faithful_proxy_is_information_only() -> None:
    down, up = legs({"Connection": "upgrade", "X-Forwarded-For": "192.168.1.23"})  # token case differs only
    found = leg_finding(diag(down, others=[up]))
    assert found is not None and found[0] == Severity.INFO and "`Connection`" not in found[1]


def test_no_pairing_without_the_proxy_signature() -> None:
    """A client that reuses one key (some embedded stacks do) retrying the same server, or a
    second attempt made after the first was answered, is not a proxy leg."""
    down, up = legs({"Device-Id": None})
    retry = replace(up, server=down.server)
    assert leg_finding(diag(down, others=[retry])) is None
    later = replace(up, request=make_request(set_headers={"Device-Id": None}, ts_ns=T0 + 10 * MS))
    assert leg_finding(diag(down, others=[later])) is None  # after the proxy's 403 at T0 + 2 ms
    other_key = replace(
        up, request=make_request(set_headers={"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAA=="})
    )
    assert leg_finding(diag(down, others=[other_key])) is None


def test_recorded_nginx_legs() -> None:
    """Real nginx 1.22 in front of a websockets server, both legs on loopback."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "analyzer",
            "analyze",
            "captures/nginx-no-upgrade-forwarding-200.pcap",
            "-f",
            "json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    handshakes = json.loads(proc.stdout)["handshakes"]
    messages = [
        f["message"] for h in handshakes for f in h["findings"] if f["name"] == "proxy-changed-request"
    ]
    assert len(messages) == 2
    assert all("dropped `Upgrade`" in m and "`Connection` 'Upgrade' → 'close'" in m for m in messages)
    assert "the backend answered HTTP 200 OK" in messages[0] and "Server is running" in messages[0]


def test_gateway_error_names_the_proxys_failed_upstream_connection() -> None:
    """A 502 from nginx with, in the same capture, nginx's own SYN to the backend answered by RST
    while the request waited: the cause says so instead of guessing."""
    from factories import syn_only

    from analyzer.model import Transport

    down = make_handshake(
        server=PROXY, response=make_response(502, "<html>bad gateway</html>", server="nginx")
    )
    refused = Transport(syn=True, server_rst=True, first_ns=T0 + MS, last_ns=T0 + MS)
    upstream = replace(syn_only(rst=True), tcp_stream=1, server=BACKEND, transport=refused)
    d = diag(down, others=[upstream])
    assert d.cause is not None and d.cause.name == "proxy-rejected"
    assert "its own connection to 172.17.0.2:8000 was refused (RST)" in d.cause.message
    too_late = replace(upstream, transport=replace(refused, first_ns=T0 + 5 * MS))  # after the 502
    assert d.cause.message != diag(down, others=[too_late]).cause.message  # type: ignore[union-attr]
