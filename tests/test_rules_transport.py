"""WS0xx: transport and TLS verdicts."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from factories import (
    CLIENT_HELLO,
    MS,
    T0,
    cause,
    close,
    diag,
    good_transport,
    make_handshake,
    make_request,
    make_response,
    names,
    silent_drop,
    syn_only,
    text,
)
from websockets.frames import Frame, Opcode

from analyzer.config import Config
from analyzer.model import Endpoint, Handshake, Payload, Severity, Transport


def test_syn_answered_by_rst_is_port_closed() -> None:
    """SYN → RST means nothing listens: port-closed."""
    assert cause(diag(syn_only(rst=True))) == "port-closed"


def test_unanswered_syn_is_no_answer_not_port_closed() -> None:
    """A SYN with neither SYN-ACK nor RST is dropped: no-answer."""
    d = diag(syn_only())
    assert cause(d) == "no-answer"
    assert "port-closed" not in names(d)


def test_request_then_fin_is_no_answer() -> None:
    """A well-formed request followed by a silent FIN: no-answer."""
    assert cause(diag(silent_drop())) == "no-answer"


def test_request_then_rst_is_connection_reset() -> None:
    """A request followed by a RST and no bytes: connection-reset."""
    d = diag(silent_drop(rst=True))
    assert cause(d) == "connection-reset"
    assert "no-answer" not in names(d)


def test_good_handshake_has_no_transport_findings() -> None:
    """The known-good handshake gets nothing."""
    assert diag(make_handshake()).findings == ()


def _tls_client(**t: Any) -> Transport:
    return good_transport(client_payload=Payload.TLS, **t)


def test_clienthello_answered_with_http_400_is_tls_to_plain_port() -> None:
    """websockets answers a ClientHello with a plaintext 400: tls-to-plain-port."""
    resp = make_response(
        400, "Failed to open a WebSocket connection: did not receive a valid HTTP request.\n"
    )
    hs = make_handshake(no_request=True, response=resp, transport=_tls_client())
    assert cause(diag(hs)) == "tls-to-plain-port"


def test_clienthello_then_close_on_plain_port_is_tls_to_plain_port() -> None:
    """A ClientHello to :8000 and a silent close: tls-to-plain-port."""
    t = _tls_client(server_payload=Payload.NONE, server_fin=True)
    hs = make_handshake(no_request=True, no_response=True, transport=t)
    assert cause(diag(hs)) == "tls-to-plain-port"


def test_clienthello_unanswered_on_443_is_no_server_hello() -> None:
    """On a TLS port a missing ServerHello is no-server-hello, not a ws/wss mix-up."""
    t = _tls_client(server_payload=Payload.NONE, server_fin=True)
    hs = make_handshake(no_request=True, no_response=True, transport=t, server=Endpoint("192.168.1.10", 443))
    d = diag(hs)
    assert cause(d) == "no-server-hello"
    assert "tls-to-plain-port" not in names(d)


def test_tls_both_ways_is_not_a_mismatch() -> None:
    """TLS answered by TLS without alert: nothing to say."""
    t = _tls_client(server_payload=Payload.TLS)
    hs = make_handshake(no_request=True, no_response=True, transport=t, server=Endpoint("192.168.1.10", 443))
    assert diag(hs).findings == ()


def test_tls_alert_is_tls_handshake_failed() -> None:
    """A fatal alert from the server: tls-handshake-failed, naming the alert."""
    t = _tls_client(server_payload=Payload.TLS, tls_alert=(2, 40))
    hs = make_handshake(no_request=True, no_response=True, transport=t, server=Endpoint("192.168.1.10", 443))
    d = diag(hs)
    assert cause(d) == "tls-handshake-failed"
    assert d.cause is not None and "handshake_failure" in d.cause.message


def test_plain_request_answered_with_tls_is_plain_to_tls_port() -> None:
    """A GET answered by a TLS alert record: plain-to-tls-port."""
    t = good_transport(server_payload=Payload.TLS, tls_alert=(2, 70))
    assert cause(diag(make_handshake(no_response=True, transport=t))) == "plain-to-tls-port"


def test_nginx_plain_http_page_is_plain_to_tls_port() -> None:
    """nginx's 400 'plain HTTP request was sent to HTTPS port' page: plain-to-tls-port."""
    body = "<html><center>The plain HTTP request was sent to HTTPS port</center><center>nginx</center></html>"
    hs = make_handshake(response=make_response(400, body, server="nginx/1.22.1"))
    d = diag(hs)
    assert cause(d) == "plain-to-tls-port"
    assert "proxy-rejected" not in names(d)


def test_hello_without_server_hello_is_no_server_hello() -> None:
    """Client hello, no server hello, client gave up after 10 s: no-server-hello (unbound device)."""
    frames = (text("client", CLIENT_HELLO, 3),)
    t = good_transport(last_ns=T0 + 10_050 * MS, client_fin=True)
    d = diag(make_handshake(frames=frames, transport=t))
    assert cause(d) == "no-server-hello"


def test_bind_prompt_is_reported_with_no_server_hello() -> None:
    """The stt bind prompt makes no-server-hello certain and is quoted."""
    stt = {"type": "stt", "text": "请登录控制面板\uff0c输入123456\uff0c绑定设备。", "session_id": "x"}
    frames = (text("client", CLIENT_HELLO, 3), text("server", stt, 1100))
    d = diag(make_handshake(frames=frames))
    assert cause(d) == "no-server-hello"
    assert d.cause is not None and "123456" in d.cause.message


def test_hello_with_short_capture_is_only_a_warning() -> None:
    """A capture that ends 50 ms after the hello proves nothing: warning, no cause."""
    d = diag(make_handshake(frames=(text("client", CLIENT_HELLO, 3),)))
    assert cause(d) is None
    assert names(d, "warning") == ["no-server-hello"]


def test_server_hello_present_is_fine() -> None:
    """Hello answered: no no-server-hello."""
    assert "no-server-hello" not in names(diag(make_handshake()))


def test_no_server_hello_ignored_in_rfc6455_profile_for_non_xiaozhi() -> None:
    """Generic clients have no hello: nothing is expected."""
    req = make_request(
        target="/chat",
        headers=[
            ("Host", "x"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("Sec-WebSocket-Version", "13"),
        ],
    )
    d = diag(make_handshake(req, frames=(text("client", "hi", 3), close("client", 1000, ms=4))))
    assert d.findings == ()


def test_plain_request_closed_silently_on_8443_is_plain_to_tls_port() -> None:
    """Python's ssl server just closes on a plain GET: on a TLS port that is plain-to-tls-port."""
    d = diag(replace(silent_drop(), server=Endpoint("192.168.1.10", 8443)))
    assert cause(d) == "plain-to-tls-port"
    assert "no-answer" in names(d)


def test_plain_request_closed_silently_on_8000_stays_no_answer() -> None:
    """The same silence on a plain port is no-answer."""
    assert "plain-to-tls-port" not in names(diag(silent_drop()))


def test_client_alert_is_tls_handshake_failed_from_client() -> None:
    """The client's unknown_ca alert: tls-handshake-failed, saying the client refused."""
    t = _tls_client(
        server_payload=Payload.TLS, tls_alert=(2, 48), tls_alert_by="client", tls_server_hello=True
    )
    hs = make_handshake(no_request=True, no_response=True, transport=t, server=Endpoint("192.168.1.10", 443))
    d = diag(hs)
    assert cause(d) == "tls-handshake-failed"
    assert d.cause is not None and "client" in d.cause.message and "unknown_ca" in d.cause.message


def test_request_head_that_never_ended_is_named_in_the_no_answer_verdict() -> None:
    """A partial head (no blank line) the server dropped: no-answer, explained by the head."""
    d = diag(silent_drop(make_request(anomalies=("head-incomplete",))))
    assert cause(d) == "no-answer"
    assert d.cause is not None and "never ended" in d.cause.message


def _idle_session(silence_s: float, closer_is_server: bool) -> Handshake:
    """A real-timed connection: upgrade, a frame each way, `silence_s` without a byte, a FIN."""
    from analyzer.pipeline import analyze_segments
    from tests.pcapwrite import ANSWER_101, UPGRADE
    from tests.segments import Wire

    hello = Frame(Opcode.TEXT, b'{"type":"hello"}').serialize(mask=True, extensions=None)
    pong = Frame(Opcode.TEXT, b'{"type":"hello"}').serialize(mask=False, extensions=None)
    w = Wire().handshake().send(True, UPGRADE).send(False, ANSWER_101).send(True, hello).send(False, pong)
    w.ts += int(silence_s * 1e9)
    w.fin(not closer_is_server).fin(closer_is_server)
    (hs,) = analyze_segments(w.segments).handshakes
    return hs


def test_close_after_a_proxy_idle_timeout_is_named() -> None:
    """60 s of silence, then the server side (nginx, toward the device) closes: the idle
    timeout is named with who closed; the same from the client side (the proxy, on the backend
    leg) too; 45 s matches no known timeout."""
    from analyzer.rules import diagnose

    hs = _idle_session(60.3, closer_is_server=True)
    assert hs.transport.closed_by == "server"
    [d] = diagnose([hs], [], Config())
    [f] = [f for f in d.findings if f.name == "closed-after-idle"]
    assert f.severity == Severity.WARNING and "60.3 s" in f.message and "proxy_read_timeout" in f.message
    assert "(server) closed" in f.message
    [d] = diagnose([_idle_session(100.5, closer_is_server=False)], [], Config())
    found = [f.message for f in d.findings if f.name == "closed-after-idle"]
    assert len(found) == 1 and "(client) closed" in found[0] and "Cloudflare" in found[0]
    [d] = diagnose([_idle_session(45.0, closer_is_server=True)], [], Config())
    assert not any(f.name == "closed-after-idle" for f in d.findings)


def test_recorded_nginx_idle_timeout() -> None:
    """Real nginx 1.22 (proxy_read_timeout 60s) between a websockets client and an echo server,
    neither sending pings: nginx closes both legs 60 s after the last byte; each leg says who."""
    from pathlib import Path

    from analyzer.run import analyze_path

    capture = Path(__file__).resolve().parent.parent / "captures" / "nginx-idle-timeout-60s.pcap"
    report = analyze_path(str(capture))
    seen = {}
    for d in report.diagnoses:
        [f] = [f for f in d.findings if f.name == "closed-after-idle"]
        assert "after 60.0 s without a byte" in f.message and "proxy_read_timeout" in f.message
        seen[d.handshake.server.port] = d.handshake.transport.closed_by
        assert d.cause is None  # the upgrade itself worked
    assert seen == {8080: "server", 8000: "client"}  # nginx closed toward the device, and upstream


def test_a_custom_idle_timeout_is_recognised_by_repetition() -> None:
    """45 s is no product's default; three sessions each closed by the server after 45 s of
    silence are one timer. One alone, or closes by different sides, are left alone."""
    from analyzer.rules import diagnose

    three = [_idle_session(45.0 + 0.2 * i, closer_is_server=True) for i in range(3)]
    found = [
        f.message for d in diagnose(three, [], Config()) for f in d.findings if f.name == "closed-after-idle"
    ]
    assert len(found) == 3 and all("as 2 other connections" in m and "about 45 s" in m for m in found)
    mixed = [*three[:2], _idle_session(45.1, closer_is_server=False)]
    assert not any(f.name == "closed-after-idle" for d in diagnose(mixed, [], Config()) for f in d.findings)
