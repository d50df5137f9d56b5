"""The handshake tracker on hand-built connections: pairing, upgrades, frames, failures, OTA."""

from __future__ import annotations

import random

from websockets.frames import Frame, Opcode

from analyzer.http_stream import MAX_PENDING, MessageReader, Mode
from analyzer.model import Outcome, Payload
from analyzer.pipeline import analyze_segments
from tests.segments import Wire

ESP32_REQUEST = (
    b"GET /xiaozhi/v1/ HTTP/1.1\r\n"
    b"Host: 192.168.1.10\r\n"
    b"Authorization: Bearer Xw3abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN.1765432100\r\n"
    b"Client-Id: 3f2b8c1e-9a7d-4e21-b0c4-5d6e7f809a1b\r\n"
    b"Connection: Upgrade\r\n"
    b"Device-Id: a0:b7:65:12:34:56\r\n"
    b"Protocol-Version: 1\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"Upgrade: websocket\r\n\r\n"
)
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nServer: Python/3.10 websockets/14.2\r\n\r\n"
)


def text_frame(text: str, mask: bool) -> bytes:
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=mask, extensions=[])


def close_frame(code: int, mask: bool) -> bytes:
    return Frame(Opcode.CLOSE, code.to_bytes(2, "big")).serialize(mask=mask, extensions=[])


def test_auth_failed_after_101_keeps_request_answer_and_frames() -> None:
    """The xiaozhi rejection: 101, then text 认证失败 and close 1000, all reconstructed."""
    w = Wire().handshake().send(True, ESP32_REQUEST)
    w.send(False, SWITCHING + text_frame("认证失败", False) + close_frame(1000, False)).fin(False)
    [hs] = analyze_segments(w.segments).handshakes
    assert hs.outcome is Outcome.UPGRADED
    assert hs.request is not None and hs.request.target == "/xiaozhi/v1/"
    assert [n for n, _ in hs.request.headers][:3] == ["Host", "Authorization", "Client-Id"]
    assert hs.response is not None and hs.response.status == 101
    assert [f.text for f in hs.frames][:1] == ["认证失败"]
    assert hs.frames[1].close_code == 1000
    assert hs.client_mac == "a0:b7:65:12:34:56"


def test_request_split_over_many_segments_is_byte_exact() -> None:
    w = Wire().handshake().send(True, ESP32_REQUEST, sizes=[5, 17, 1, 40, 3]).send(False, SWITCHING)
    [hs] = analyze_segments(w.segments).handshakes
    assert hs.request is not None
    assert (
        hs.request.header(
            "Authorization",
        )
        == "Bearer Xw3abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN.1765432100"
    )
    assert len(hs.request.frames) == 6  # every segment that carried part of the head


def test_shuffled_and_duplicated_segments_give_the_same_request() -> None:
    w = Wire().handshake().send(True, ESP32_REQUEST, sizes=[7, 9, 30, 11, 50]).send(False, SWITCHING)
    segs = w.segments[:3] + random.Random(4).sample(w.segments[3:8], 5) + [w.segments[5]] + w.segments[8:]
    [hs] = analyze_segments(segs).handshakes
    assert hs.request is not None and len(hs.request.headers) == 9
    assert hs.request.header("upgrade") == "websocket"


def test_rejected_with_body_and_keepalive_retry() -> None:
    """Two attempts on one keep-alive connection are two handshakes, each with its own answer."""
    body = b"<html><body><h1>403 Forbidden</h1></body></html>"
    resp = b"HTTP/1.1 403 Forbidden\r\nServer: nginx/1.22.1\r\nContent-Length: %d\r\n\r\n%s" % (
        len(body),
        body,
    )
    w = (
        Wire()
        .handshake()
        .send(True, ESP32_REQUEST)
        .send(False, resp)
        .send(True, ESP32_REQUEST)
        .send(False, resp)
    )
    hss = analyze_segments(w.segments).handshakes
    assert [h.response.status if h.response else None for h in hss] == [403, 403]
    assert hss[0].response is not None and hss[0].response.body == body


def test_no_answer_then_fin_and_reset() -> None:
    w = Wire().handshake().send(True, ESP32_REQUEST).fin(False)
    [hs] = analyze_segments(w.segments).handshakes
    assert hs.outcome is Outcome.NO_RESPONSE and hs.transport.server_fin
    w = Wire().handshake().send(True, ESP32_REQUEST).rst(False)
    [hs] = analyze_segments(w.segments).handshakes
    assert hs.outcome is Outcome.RESET


def test_syn_answered_by_rst_is_reported_as_a_failed_connection() -> None:
    w = Wire()
    w._seg(True, 0x02)
    w._seg(False, 0x14)
    [hs] = analyze_segments(w.segments).handshakes
    assert hs.request is None and hs.transport.syn and not hs.transport.syn_ack and hs.transport.server_rst
    assert hs.outcome is Outcome.RESET


def test_tls_client_hello_to_plain_port_is_not_http() -> None:
    hello = bytes.fromhex("16030100") + b"\x2f" + b"\x01" + b"\x00" * 46
    w = Wire().handshake().send(True, hello).fin(False)
    [hs] = analyze_segments(w.segments).handshakes
    assert hs.transport.client_payload is Payload.TLS
    assert hs.outcome is Outcome.NOT_HTTP


def test_plain_http_to_tls_server_sees_an_alert() -> None:
    alert = bytes.fromhex("15030100020246")
    w = Wire().handshake().send(True, ESP32_REQUEST).send(False, alert).fin(False)
    [hs] = analyze_segments(w.segments).handshakes
    assert hs.outcome is Outcome.NOT_HTTP
    assert hs.transport.tls_alert == (2, 70) and hs.transport.tls_alert_by == "server"


def test_ota_exchange_is_kept_with_its_json_answer() -> None:
    body = b'{"version":2,"mac_address":"a0:b7:65:12:34:56"}'
    req = (
        b"POST /xiaozhi/ota/ HTTP/1.1\r\nHost: 192.168.1.10:8003\r\nContent-Type: application/json\r\n"
        b"Device-Id: a0:b7:65:12:34:56\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    answer = b'{"websocket":{"url":"ws://192.168.1.10:8000/xiaozhi/v1/","token":""}}'
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
        len(answer),
        answer,
    )
    w = Wire().handshake().send(True, req, sizes=[30, 60]).send(False, resp)
    harvest = analyze_segments(w.segments)
    assert harvest.handshakes == []
    [ota] = harvest.otas
    assert ota.request.body == body
    assert ota.response is not None and ota.response.body == answer


def test_plain_http_traffic_is_not_a_handshake() -> None:
    w = Wire().handshake().send(True, b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
    w.send(False, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
    assert analyze_segments(w.segments).handshakes == []


def test_oversized_head_answered_431_keeps_the_partial_request() -> None:
    """A head over the 64 KiB bound is cut, not lost: the attempt and the server's 431 are kept."""
    req = (
        b"GET /xiaozhi/v1/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Big: "
        + b"a" * 70000
    )
    answer = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\n\r\n"
    w = Wire().handshake().send(True, req, sizes=[1400] * 51).send(False, answer).fin(False)
    [hs] = analyze_segments(w.segments).handshakes
    assert hs.request is not None and hs.request.header("upgrade") == "websocket"
    assert "head-incomplete" in hs.request.anomalies
    assert hs.response is not None and hs.response.status == 431


def test_request_never_finished_before_the_server_gave_up() -> None:
    """A slow or partial handshake (the server's open timeout) is still reported as an attempt."""
    w = (
        Wire()
        .handshake()
        .send(True, b"GET /xiaozhi/v1/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        .fin(False)
    )
    [hs] = analyze_segments(w.segments).handshakes
    assert hs.request is not None and "head-incomplete" in hs.request.anomalies
    assert hs.outcome is Outcome.NO_RESPONSE


def test_first_bytes_split_before_the_method_or_status_line_is_whole() -> None:
    """`G` then `ET /…`, and `HT` then `TP/1.1 101…`: held until they can be classified."""
    w = Wire().handshake().send(True, ESP32_REQUEST, sizes=[1, 2, 30]).send(False, SWITCHING, sizes=[2, 5])
    [hs] = analyze_segments(w.segments).handshakes
    assert hs.request is not None and hs.request.target == "/xiaozhi/v1/"
    assert hs.response is not None and hs.response.status == 101
    assert hs.request.frames[0] == w.segments[3].frame  # the frame that brought the first byte


def test_wrong_tcp_checksums_are_counted_per_side() -> None:
    """Segments whose bytes were read count per side when their TCP checksum is wrong (an
    offloading capture host's own packets, or damage); the verdict does not change."""
    import dataclasses

    from tests.pcapwrite import ANSWER_101, UPGRADE
    from tests.segments import CLIENT, Wire

    w = Wire().handshake().send(True, UPGRADE, sizes=[40]).send(False, ANSWER_101).fin(True).fin(False)
    marked = [dataclasses.replace(s, checksum_ok=s.src != CLIENT) if s.payload else s for s in w.segments]
    (h,) = analyze_segments(marked).handshakes
    assert (h.transport.client_bad_checksums, h.transport.server_bad_checksums) == (2, 0)
    (plain,) = analyze_segments(w.segments).handshakes
    assert h.outcome == plain.outcome and h.request == plain.request


CONNECT = b"CONNECT 192.168.1.10:8000 HTTP/1.1\r\nHost: 192.168.1.10:8000\r\n\r\n"
ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


def test_connect_tunnel_the_request_inside_is_the_attempt() -> None:
    """Through a forward proxy: CONNECT, `200 Connection established` (no body, no length), then
    the upgrade inside the tunnel; the CONNECT is not an attempt of its own, the inner request
    is, with the tunnel named, its 101 and its frames."""
    w = Wire().handshake().send(True, CONNECT).send(False, ESTABLISHED)
    w.send(True, ESP32_REQUEST).send(False, SWITCHING).send(False, text_frame("hi", mask=False))
    [hs] = analyze_segments(w.fin(True).fin(False).segments).handshakes
    assert hs.tunnel == "192.168.1.10:8000"
    assert hs.request is not None and hs.request.method == "GET" and hs.request.target == "/xiaozhi/v1/"
    assert hs.outcome is Outcome.UPGRADED
    assert [f.text for f in hs.frames] == ["hi"]


def test_connect_tunnel_carrying_tls_is_not_an_attempt_nor_an_oddity() -> None:
    """wss:// through the proxy: the tunnel carries TLS, which is neither an HTTP attempt nor
    'unexpected bytes between messages'."""
    client_hello = bytes.fromhex("160301002a010000260303") + bytes(32) + b"\x00\x00\x02\x13\x01\x01\x00"
    server_hello = bytes.fromhex("160303002a020000260303") + bytes(38)
    w = Wire().handshake().send(True, CONNECT).send(False, ESTABLISHED)
    w.send(True, client_hello).send(False, server_hello)
    assert analyze_segments(w.fin(True).fin(False).segments).handshakes == []
    requests, responses = MessageReader(True), MessageReader(False)
    responses.pending_methods = requests.pending_methods
    assert [m.head.start[0] for m in requests.feed(CONNECT, 1, 1)] == ["CONNECT"]
    assert requests.feed(client_hello, 2, 2) == [] and requests.mode is Mode.HOLD
    [established] = responses.feed(ESTABLISHED + server_hello, 3, 3)
    assert established.body == b"" and responses.mode is Mode.STOPPED
    assert requests.feed(requests.release(tunnel=True), 4, 4) == [] and requests.mode is Mode.STOPPED
    assert requests.anomalies == [] and responses.anomalies == []


def test_request_methods_awaiting_answers_are_bounded() -> None:
    """A client pipelining into a server that never answers: the methods kept stay bounded."""
    reader = MessageReader(True)
    reader.feed(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n" * 1000, 1, 1)
    assert len(reader.pending_methods) == MAX_PENDING


def test_refused_connect_is_the_attempt() -> None:
    """A proxy that refuses the tunnel (Squid's 403): that CONNECT is what failed."""
    refused = (
        b"HTTP/1.1 403 Forbidden\r\nServer: squid/5.7\r\nX-Squid-Error: ERR_ACCESS_DENIED 0\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    w = Wire().handshake().send(True, CONNECT).send(False, refused)
    [hs] = analyze_segments(w.fin(False).fin(True).segments).handshakes
    assert hs.request is not None and hs.request.method == "CONNECT"
    assert hs.response is not None and hs.response.status == 403 and hs.tunnel is None


def test_plain_get_answered_as_a_websocket_endpoint_is_an_attempt() -> None:
    """curl (or a proxy that dropped the upgrade headers) sends a plain GET; the answer says the
    URL is a WebSocket endpoint, so the GET is the failed attempt. A plain GET answered otherwise
    is not ours."""
    get = b"GET /ws HTTP/1.1\r\nHost: 192.168.1.10:8000\r\n\r\n"
    body = b'Can "Upgrade" only to "WebSocket".'
    endpoint = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 34\r\n\r\n" + body
    page = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    for answer, attempts in ((endpoint, 1), (page, 0)):
        w = Wire().handshake().send(True, get).send(False, answer)
        assert len(analyze_segments(w.fin(False).fin(True).segments).handshakes) == attempts
