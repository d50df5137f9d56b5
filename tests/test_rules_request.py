"""WS1xx: the request itself."""

from __future__ import annotations

from factories import (
    DEVICE,
    KEY,
    cause,
    close,
    diag,
    make_handshake,
    make_request,
    make_response,
    names,
    no_identity_frames,
    server_is_running,
    silent_drop,
    switching,
    ws_failure,
)

from analyzer.config import Config
from analyzer.model import Severity


def test_http10_silently_dropped_is_http10_request() -> None:
    """HTTP/1.0 + silent close: the request explains it, ranked before no-answer."""
    d = diag(silent_drop(make_request(version="HTTP/1.0")))
    assert cause(d) == "http10-request"
    assert "no-answer" in names(d)


def test_http11_is_not_http10_request() -> None:
    """The ESP32 request is HTTP/1.1."""
    assert "http10-request" not in names(diag(silent_drop()))


def test_content_length_dropped_is_malformed_request() -> None:
    """`Content-Length: 0` makes websockets 14.2 drop the request: malformed-request."""
    d = diag(silent_drop(make_request(add_headers=[("Content-Length", "0")])))
    assert cause(d) == "malformed-request"


def test_bare_lf_anomaly_is_malformed_request() -> None:
    """The parser's bare-lf anomaly + no answer: malformed-request."""
    assert cause(diag(silent_drop(make_request(anomalies=("bare-lf",))))) == "malformed-request"


def test_post_is_malformed_request() -> None:
    """A POST upgrade: malformed-request."""
    assert cause(diag(silent_drop(make_request(method="POST")))) == "malformed-request"


def test_clean_request_dropped_is_generic_no_answer() -> None:
    """Without a request defect the verdict stays no-answer."""
    d = diag(silent_drop())
    assert "malformed-request" not in names(d)


def test_missing_host_with_proxy_400_is_missing_host() -> None:
    """No Host, nginx answers 400: missing-host."""
    req = make_request(set_headers={"Host": None})
    resp = make_response(400, "<html><center>nginx</center></html>", server="nginx")
    assert cause(diag(make_handshake(req, resp))) == "missing-host"


def test_missing_host_accepted_by_websockets_is_warning_only() -> None:
    """websockets does not check Host: a warning, no cause."""
    d = diag(make_handshake(make_request(set_headers={"Host": None})))
    assert cause(d) is None and names(d, "warning") == ["missing-host"]


def test_missing_upgrade_426_is_missing_upgrade_headers() -> None:
    """websockets' 426 `missing Upgrade header`: missing-upgrade-headers."""
    req = make_request(set_headers={"Upgrade": None})
    assert (
        cause(diag(make_handshake(req, ws_failure(426, "missing Upgrade header"))))
        == "missing-upgrade-headers"
    )


def test_upgrade_headers_present_no_finding() -> None:
    """The ESP32 request has both upgrade headers."""
    assert "missing-upgrade-headers" not in names(diag(make_handshake()))


def test_keepalive_upgrade_with_server_running_is_connection_token_list() -> None:
    """Firefox's `keep-alive, Upgrade` + 200 Server is running: connection-token-list is the verdict."""
    req = make_request(set_headers={"Connection": "keep-alive, Upgrade"})
    d = diag(make_handshake(req, server_is_running()))
    assert cause(d) == "connection-token-list"
    assert names(d, "error") == ["connection-token-list", "server-is-running-page"]


def test_token_list_accepted_by_generic_server_is_not_an_error() -> None:
    """A browser's token list to a generic server that upgraded: info only."""
    req = make_request(
        target="/chat",
        headers=[
            ("Host", "h"),
            ("Connection", "keep-alive, Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
            ("Origin", "http://h"),
        ],
    )
    d = diag(make_handshake(req, switching(), frames=()))
    assert cause(d) is None
    assert not names(d, "error")
    assert names(d) == ["connection-token-list"]


def test_token_list_no_response_generic_is_warning() -> None:
    """A token list without a verdict from the server: warning."""
    req = make_request(set_headers={"Connection": "keep-alive, Upgrade"})
    d = diag(silent_drop(req), Config(profile="rfc6455"))
    f = next(f for f in d.findings if f.name == "connection-token-list")
    assert f.severity == Severity.WARNING


def test_bad_key_400_is_bad_websocket_key() -> None:
    """A UUID as key + websockets 400: bad-websocket-key."""
    req = make_request(set_headers={"Sec-WebSocket-Key": "3f2b8c1e-9a7d-4e21-b0c4-5d6e7f809a1b"})
    resp = ws_failure(400, "invalid Sec-WebSocket-Key header: 3f2b8c1e-9a7d-4e21-b0c4-5d6e7f809a1b")
    assert cause(diag(make_handshake(req, resp))) == "bad-websocket-key"


def test_good_key_is_fine() -> None:
    """A 16-byte base64 key gets nothing."""
    assert "bad-websocket-key" not in names(diag(make_handshake()))


def test_version_8_is_bad_websocket_version() -> None:
    """Version 8 + websockets 400: bad-websocket-version."""
    req = make_request(set_headers={"Sec-WebSocket-Version": "8"})
    resp = ws_failure(400, "invalid Sec-WebSocket-Version header: 8")
    assert cause(diag(make_handshake(req, resp))) == "bad-websocket-version"


def test_version_13_is_fine() -> None:
    """Version 13 gets nothing."""
    assert "bad-websocket-version" not in names(diag(make_handshake()))


def test_repeated_connection_500_is_duplicate_header() -> None:
    """Two Connection headers make xiaozhi's hook raise → 500: duplicate-header."""
    req = make_request(add_headers=[("Connection", "Upgrade")])
    assert cause(diag(make_handshake(req, ws_failure(500, None)))) == "duplicate-header"


def test_repeated_device_id_then_1011_is_duplicate_header() -> None:
    """Two Device-Id headers → 101 then Close 1011: duplicate-header ranks before the generic close."""
    req = make_request(add_headers=[("Device-Id", DEVICE)])
    d = diag(make_handshake(req, frames=(close("server", 1011, ms=3),)))
    assert cause(d) == "duplicate-header"
    assert "auth-failed-after-upgrade" in names(d)


def test_client_id_in_header_and_query_is_duplicate_header() -> None:
    """Client-Id header + client-id query with device-id only in the query: duplicate-header."""
    req = make_request(
        target=f"/xiaozhi/v1/?device-id={DEVICE}&client-id=abc", set_headers={"Device-Id": None}
    )
    d = diag(make_handshake(req, frames=(close("server", 1011, ms=3),)))
    assert cause(d) == "duplicate-header"


def test_single_headers_no_duplicate() -> None:
    """The ESP32 request repeats nothing."""
    assert "duplicate-header" not in names(diag(make_handshake()))


def test_device_underscore_id_with_port_ok_text_is_underscore_header() -> None:
    """`Device_Id` instead of `Device-Id` → 端口正常: underscore-header is the verdict."""
    req = make_request(set_headers={"Device-Id": None}, add_headers=[("Device_Id", DEVICE)])
    d = diag(make_handshake(req, frames=no_identity_frames()))
    assert cause(d) == "underscore-header"
    assert "missing-device-id" in names(d, "error")


def test_other_underscore_header_is_warning() -> None:
    """Any `_` header on a good handshake: warning only."""
    d = diag(make_handshake(make_request(add_headers=[("X_Trace", "1")])))
    assert cause(d) is None and names(d, "warning") == ["underscore-header"]


def test_no_underscore_no_finding() -> None:
    """Hyphenated names get nothing."""
    assert "underscore-header" not in names(diag(make_handshake()))


def test_404_is_wrong_path() -> None:
    """A 404: wrong-path."""
    resp = make_response(404, "<html><center>nginx</center></html>", server="nginx/1.22.1")
    assert cause(diag(make_handshake(make_request(target="/ws"), resp))) == "wrong-path"


def test_uvicorn_403_on_other_path_is_wrong_path() -> None:
    """Starlette answers 403 for an unrouted WebSocket path: wrong-path."""
    resp = make_response(403, "", server="uvicorn")
    d = diag(make_handshake(make_request(target="/ws"), resp), Config(expect_path="/xiaozhi/v1/"))
    assert cause(d) == "wrong-path"


def test_expect_path_mismatch_on_good_xiaozhi_is_info() -> None:
    """xiaozhi accepts any path: a mismatch on a 101 is not an error."""
    d = diag(make_handshake(make_request(target="/other/")), Config(expect_path="/xiaozhi/v1/"))
    assert cause(d) is None
    assert [f.severity for f in d.findings if f.name == "wrong-path"] == [Severity.INFO]


def test_expected_path_no_finding() -> None:
    """The expected path gets nothing."""
    assert "wrong-path" not in names(diag(make_handshake(), Config(expect_path="/xiaozhi/v1/")))


def test_non_websocket_upgrade_gets_nothing() -> None:
    """`Upgrade: h2c` is not ours: no findings, no cause."""
    req = make_request(
        target="/",
        headers=[
            ("Host", "h"),
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQAoAAAAAIAAAAA"),
        ],
    )
    d = diag(make_handshake(req, make_response(200, "<html></html>", server="nginx"), frames=()))
    assert d.findings == () and d.cause is None


def test_426_without_a_version_list_means_the_upgrade_headers_were_lost_on_the_way() -> None:
    """Node `ws` answers 426 `Upgrade Required` when it sees no upgrade: a proxy dropped them."""
    resp = make_response(426, b"Upgrade Required", server=None)
    d = diag(make_handshake(response=resp))
    assert cause(d) == "missing-upgrade-headers"
    assert d.cause is not None and "did not forward" in d.cause.message


def test_426_with_a_version_list_is_not_blamed_on_lost_headers() -> None:
    resp = make_response(426, server=None, headers=[("Sec-WebSocket-Version", "8")])
    assert "missing-upgrade-headers" not in names(diag(make_handshake(response=resp)))


def test_spring_can_upgrade_only_to_websocket() -> None:
    resp = make_response(400, b'Can "Upgrade" only to "WebSocket".', server=None)
    assert cause(diag(make_handshake(response=resp))) == "missing-upgrade-headers"


def test_a_101_without_upgrade_header_fails_clients_that_check_it() -> None:
    """RFC 6455 §4.2.2: a 101 without `Upgrade: websocket`; an error unless the client went on."""
    full = switching()
    bare = make_response(
        101, server=None, headers=[(n, v) for n, v in full.headers if n.lower() != "upgrade"]
    )
    d = diag(make_handshake(response=bare, frames=()))
    assert cause(d) == "missing-upgrade-headers"
    went_on = diag(make_handshake(response=bare))
    assert cause(went_on) is None and "missing-upgrade-headers" in names(went_on, Severity.WARNING)
