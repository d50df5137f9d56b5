"""WS4xx: OTA answer vs the connection the device opens next."""

from __future__ import annotations

from dataclasses import replace

from factories import T0, cause, diag, make_handshake, make_ota, names, syn_only

from analyzer.config import Config
from analyzer.model import Endpoint, Severity
from analyzer.rules import diagnose_otas


def test_docker_ip_then_unanswered_syn_is_ota_url_unreachable() -> None:
    """OTA hands out 172.18.0.2, SYNs there go unanswered: ota-url-unreachable before no-answer."""
    ota = make_ota(url="ws://172.18.0.2:8000/xiaozhi/v1/")
    hs = replace(syn_only(), server=Endpoint("172.18.0.2", 8000))
    d = diag(hs, otas=[ota])
    assert cause(d) == "ota-url-unreachable"
    assert "no-answer" in names(d, "error")


def test_placeholder_url_on_ota_without_any_attempt() -> None:
    """OTA with xiaozhi.server.com and no WebSocket afterwards: reported on the OTA exchange."""
    ota = make_ota(url="ws://xiaozhi.server.com:8000/xiaozhi/v1/")
    [od] = diagnose_otas([ota], [], Config())
    assert od.cause == od.findings[0]
    assert od.findings[0].name == "ota-url-unreachable"
    assert od.findings[0].severity == Severity.ERROR
    assert "no WebSocket attempt" in od.findings[0].message


def test_reachable_url_has_no_ota_findings() -> None:
    """A LAN URL matching the handshake: nothing on OTA or handshake."""
    ota = make_ota()
    assert [od.findings for od in diagnose_otas([ota], [make_handshake()], Config())] == [()]
    assert diag(make_handshake(), otas=[ota]).findings == ()


def test_loopback_url_fine_for_loopback_client() -> None:
    """127.0.0.1 handed to a client on the same machine is reachable."""
    ota = make_ota(url="ws://127.0.0.1:8000/xiaozhi/v1/")
    local = replace(ota, client=Endpoint("127.0.0.1", 5000))
    assert diagnose_otas([local], [], Config())[0].cause is None
    assert diagnose_otas([ota], [], Config())[0].findings[0].name == "ota-url-unreachable"


def test_connecting_to_other_port_than_ota_said_is_mismatch() -> None:
    """OTA says :8000, the device connects to :8002 and fails: ota-url-mismatch."""
    from factories import make_response

    hs = make_handshake(
        response=make_response(200, '{"code":401,"msg":"x"}', server=None),
        server=Endpoint("192.168.1.10", 8002),
    )
    d = diag(hs, otas=[make_ota()])
    assert "ota-url-mismatch" in names(d, "error")
    assert cause(d) == "wrong-service"


def test_path_only_difference_is_warning() -> None:
    """The server ignores the path: a path-only difference is a warning."""
    from factories import make_request

    d = diag(make_handshake(make_request(target="/ws/")), otas=[make_ota()])
    assert names(d, "warning") == ["ota-url-mismatch"]


def test_ota_after_handshake_is_not_used() -> None:
    """Only an OTA before the handshake is correlated."""
    ota = make_ota(url="ws://10.0.0.1:9000/x/", ts_ns=T0 + 10_000_000_000)
    assert diag(make_handshake(), otas=[ota]).findings == ()


def test_configured_ws_url_used_without_ota() -> None:
    """--server-config's server.websocket stands in for the OTA answer."""
    d = diag(make_handshake(), Config(configured_ws_url="ws://192.168.1.10:8000/xiaozhi/v1/"))
    assert d.findings == ()
    d = diag(make_handshake(), Config(configured_ws_url="ws://192.168.1.10:9000/xiaozhi/v1/"))
    assert names(d) == ["ota-url-mismatch"]


def test_docker_url_reached_from_host_is_ota_url_mismatch() -> None:
    """OTA reached at 127.0.0.1 hands out 172.17.0.2: a container address, ota-url-mismatch."""
    ota = replace(
        make_ota(url="ws://172.17.0.2:8000/xiaozhi/v1/"),
        client=Endpoint("127.0.0.1", 5000),
        server=Endpoint("127.0.0.1", 8003),
    )
    [od] = diagnose_otas([ota], [], Config())
    assert od.cause is not None and od.cause.name == "ota-url-mismatch"


def test_ota_404_without_slash_is_wrong_path() -> None:
    """POST /xiaozhi/ota → aiohttp 404: wrong-path on the OTA exchange."""
    from analyzer.model import HttpResponse

    ota = make_ota()
    ota = replace(
        ota,
        request=replace(ota.request, target="/xiaozhi/ota"),
        response=HttpResponse("HTTP/1.1", 404, "Not Found", (("Server", "aiohttp"),), b"404: Not Found"),
    )
    [od] = diagnose_otas([ota], [], Config())
    assert od.cause is not None and od.cause.name == "wrong-path"
    assert "/xiaozhi/ota/" in od.cause.message


def test_ota_refusing_missing_client_id() -> None:
    """Single-module OTA without Client-Id answers success:false: missing-client-id."""
    ota = make_ota(client=None, body=b'{"success": false, "message": "request error."}')
    [od] = diagnose_otas([ota], [], Config())
    assert od.cause is not None and od.cause.name == "missing-client-id"


def test_ota_refusing_bad_device_id() -> None:
    """manager-api `Invalid device ID`: malformed-device-id."""
    ota = make_ota(device="not-a-mac", body=b'{"error":"Invalid device ID"}')
    [od] = diagnose_otas([ota], [], Config())
    assert od.cause is not None and od.cause.name == "malformed-device-id"


def test_ota_ignore_applies() -> None:
    """--ignore drops OTA findings too."""
    ota = make_ota(url="ws://xiaozhi.server.com:8000/xiaozhi/v1/")
    assert diagnose_otas([ota], [], Config(ignore=("WS4",)))[0].findings == ()


def test_devices_behind_one_address_get_their_own_ota_answer() -> None:
    """Many devices behind one NAT address: each handshake is matched with its own device's
    last OTA answer (by Device-Id), never a neighbour's; one without Device-Id falls back on
    the address. The lookups are indexed (`rules._facts.OtaIndex`), so this pins their rule."""
    from factories import DEVICE, make_request

    from analyzer.rules._facts import HandshakeIndex, OtaIndex, ota_for
    from analyzer.rules.ota import next_handshake

    other = "aa:bb:cc:dd:ee:01"
    mine = make_ota(url="ws://192.168.1.10:8000/xiaozhi/v1/", ts_ns=T0 - 9_000_000_000)
    neighbour = make_ota(url="ws://10.9.9.9:9000/x/", device=other, ts_ns=T0 - 1_000_000_000)
    later = make_ota(url="ws://10.8.8.8:9000/y/", ts_ns=T0 + 1_000_000_000)
    index = OtaIndex([mine, neighbour, later])
    hs = make_handshake()
    assert ota_for(hs, index) is mine
    assert ota_for(make_handshake(make_request(set_headers={"Device-Id": DEVICE.upper()})), index) is mine
    anonymous = make_handshake(make_request(set_headers={"Device-Id": None}))
    assert ota_for(anonymous, index) is neighbour  # no Device-Id: the latest answer to that address
    assert diag(hs, otas=[mine, neighbour, later]).findings == ()

    theirs = make_handshake(make_request(set_headers={"Device-Id": other}), tcp_stream=5)
    handshakes = HandshakeIndex([theirs, hs])
    assert next_handshake(mine, handshakes) is hs
    assert next_handshake(neighbour, handshakes) is theirs
    assert next_handshake(later, handshakes) is None
