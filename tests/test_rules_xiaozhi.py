"""WS2xx: the xiaozhi contract — identity, tokens, in-band rejections."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from factories import (
    CLIENT,
    CLIENT_HELLO,
    DEVICE,
    SECRET,
    T0,
    TS,
    auth_failed_frames,
    cause,
    close,
    diag,
    make_handshake,
    make_ota,
    make_request,
    names,
    no_identity_frames,
    silent_drop,
    text,
    token_for,
)

from analyzer.config import Config
from analyzer.model import Endpoint, Handshake, Severity

KEYED = Config(auth_key=SECRET)
DAY_NS = 86_400 * 1_000_000_000


def failed_auth(**req: Any) -> Handshake:
    return make_handshake(make_request(**req), frames=auth_failed_frames())


# --- missing-device-id --------------------------------------------------------------------------


def test_port_ok_text_is_missing_device_id_with_new_version() -> None:
    """端口正常…digital-human: missing-device-id, server ≥ v0.9.4."""
    req = make_request(set_headers={"Device-Id": None})
    d = diag(make_handshake(req, frames=no_identity_frames()))
    assert cause(d) == "missing-device-id"
    assert d.cause is not None and "v0.9.4" in d.cause.message


def test_port_ok_text_old_wording_names_old_version() -> None:
    """端口正常…test_page.html: v0.4.1-v0.9.3."""
    req = make_request(set_headers={"Device-Id": None})
    d = diag(make_handshake(req, frames=no_identity_frames(new=False)))
    assert d.cause is not None and "v0.4.1-v0.9.3" in d.cause.message


def test_query_key_with_underscore_is_explained() -> None:
    """`?device_id=` is ignored: the message names the exact key."""
    req = make_request(target=f"/xiaozhi/v1/?device_id={DEVICE}", set_headers={"Device-Id": None})
    d = diag(make_handshake(req, frames=no_identity_frames()))
    assert cause(d) == "missing-device-id"
    assert d.cause is not None and "device_id" in d.cause.message


def test_device_id_in_query_is_fine() -> None:
    """`?device-id=` works: no missing-device-id."""
    req = make_request(
        target=f"/xiaozhi/v1/?device-id={DEVICE}&client-id={CLIENT}",
        set_headers={"Device-Id": None, "Client-Id": None},
    )
    assert "missing-device-id" not in names(diag(make_handshake(req)))


def test_java_server_1007_is_missing_device_id() -> None:
    """Spring's Close 1007 `设备ID为空`: missing-device-id."""
    req = make_request(set_headers={"Device-Id": None})
    d = diag(make_handshake(req, frames=(close("server", 1007, "设备ID为空", ms=3),)))
    assert cause(d) == "missing-device-id"


# --- malformed-device-id / device-id-mismatch / client id ---------------------------------------


def test_upper_case_device_id_is_warning() -> None:
    """Upper-case MAC: malformed-device-id warning on a good handshake."""
    d = diag(make_handshake(make_request(set_headers={"Device-Id": DEVICE.upper()})))
    assert cause(d) is None and "malformed-device-id" in names(d, "warning")


def test_upper_case_device_misses_lower_whitelist_is_error() -> None:
    """Upper-case Device-Id vs a lower-case whitelist entry + 认证失败: malformed-device-id error."""
    hs = failed_auth(set_headers={"Device-Id": DEVICE.upper(), "Authorization": None})
    d = diag(hs, Config(allowed_devices=(DEVICE,)))
    assert "malformed-device-id" in names(d, "error")


def test_lower_case_mac_is_fine() -> None:
    """The firmware's format gets nothing."""
    assert "malformed-device-id" not in names(diag(make_handshake()))


def test_manager_api_uuid_device_id_is_fine() -> None:
    """The manager-api's own client sends UUIDs for both ids (spec §4.3)."""
    req = make_request(set_headers={"Device-Id": "11111111-2222-3333-4444-555555555555"})
    assert "malformed-device-id" not in names(diag(make_handshake(req)))


def test_device_id_not_sender_mac_on_same_lan_is_warning() -> None:
    """Link-layer MAC differs from Device-Id on the same /24: device-id-mismatch warning."""
    d = diag(make_handshake(client_mac="24:0a:c4:11:22:33"))
    assert names(d, "warning") == ["device-id-mismatch"]


def test_device_id_mismatch_skipped_on_loopback_and_routers() -> None:
    """Zero MACs (loopback) and other subnets (router MAC) say nothing."""
    assert diag(make_handshake(client_mac="00:00:00:00:00:00")).findings == ()
    routed = make_handshake(client_mac="24:0a:c4:11:22:33", client=Endpoint("10.9.8.7", 40000))
    assert diag(routed).findings == ()


def test_device_id_equal_to_mac_is_fine() -> None:
    """The sender's own MAC gets nothing."""
    assert diag(make_handshake(client_mac=DEVICE.upper())).findings == ()


def test_missing_client_id_with_token_and_auth_failure_is_error() -> None:
    """No Client-Id + token + 认证失败: missing-client-id (token verified with 'None')."""
    d = diag(failed_auth(set_headers={"Client-Id": None}))
    assert cause(d) == "missing-client-id"


def test_missing_client_id_on_good_handshake_is_silent() -> None:
    """Accepted without Client-Id (auth off): nothing."""
    assert "missing-client-id" not in names(
        diag(make_handshake(make_request(set_headers={"Client-Id": None})))
    )


def test_non_uuid_client_id_is_warning() -> None:
    """`Client-Id: my-client`: malformed-client-id warning."""
    d = diag(make_handshake(make_request(set_headers={"Client-Id": "my-client"})))
    assert names(d, "warning") == ["malformed-client-id"]


def test_uuid_client_id_is_fine() -> None:
    """The board UUID gets nothing."""
    assert "malformed-client-id" not in names(diag(make_handshake()))


# --- tokens -------------------------------------------------------------------------------------


def test_no_authorization_and_auth_failed_is_missing_token() -> None:
    """No Authorization + 认证失败: missing-token first, auth-failed-after-upgrade after it."""
    d = diag(failed_auth(set_headers={"Authorization": None}))
    assert names(d, "error") == ["missing-token", "auth-failed-after-upgrade"]


def test_missing_token_mentions_empty_ota_token() -> None:
    """OTA gave `"token": ""`: the message says auth is off at the manager-api."""
    d = diag(failed_auth(set_headers={"Authorization": None}), otas=[make_ota(token="")])
    assert d.cause is not None and "no token" in d.cause.message


def test_missing_token_on_good_handshake_is_silent() -> None:
    """Auth disabled, no token, 101 + hello: nothing."""
    assert diag(make_handshake(make_request(set_headers={"Authorization": None}))).findings == ()


def test_missing_token_with_auth_enabled_and_no_verdict_is_warning() -> None:
    """--server-config says auth on, the capture shows no verdict: warning."""
    hs = make_handshake(make_request(set_headers={"Authorization": None}), frames=())
    d = diag(hs, Config(auth_enabled=True))
    assert names(d, "warning") == ["missing-token"]


def test_old_server_silent_close_without_token_is_missing_token() -> None:
    """≤ v0.8.3: Close 1000 within ms, no text → missing-token when no Authorization."""
    req = make_request(set_headers={"Authorization": None})
    d = diag(make_handshake(req, frames=(close("server", 1000, ms=2),)))
    assert cause(d) == "missing-token"


def test_lowercase_bearer_is_malformed_authorization() -> None:
    """`bearer …` + 认证失败: malformed-authorization."""
    d = diag(failed_auth(set_headers={"Authorization": f"bearer {token_for()}"}))
    assert cause(d) == "malformed-authorization"


def test_empty_bearer_is_malformed_authorization() -> None:
    """`Bearer ` with nothing after it: malformed-authorization, empty token."""
    d = diag(failed_auth(set_headers={"Authorization": "Bearer "}))
    assert cause(d) == "malformed-authorization"
    assert d.cause is not None and "empty" in d.cause.message


def test_proper_bearer_is_not_malformed() -> None:
    """`Bearer <token>`: no malformed-authorization."""
    assert "malformed-authorization" not in names(diag(failed_auth()))


def test_test_token_is_token_rejected() -> None:
    """`Bearer test-token` + 认证失败: token-rejected."""
    d = diag(failed_auth(set_headers={"Authorization": "Bearer test-token"}))
    assert cause(d) == "token-rejected"
    assert d.cause is not None and "test-token" in d.cause.message


def test_jwt_is_token_rejected() -> None:
    """A JWT: token-rejected."""
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    d = diag(failed_auth(set_headers={"Authorization": f"Bearer {jwt}"}))
    assert cause(d) == "token-rejected"


def test_key_mismatch_is_token_rejected_with_key() -> None:
    """Token signed with another key, --auth-key given: token-rejected (key mismatch)."""
    other = token_for(key="another-key")
    d = diag(failed_auth(set_headers={"Authorization": f"Bearer {other}"}), KEYED)
    assert cause(d) == "token-rejected"
    assert d.cause is not None and "key mismatch" in d.cause.message


def test_valid_token_with_key_no_token_rejected() -> None:
    """A token that verifies with the key gets nothing."""
    assert diag(make_handshake(), KEYED).findings == ()


def test_fresh_well_formed_token_without_key_falls_back_to_auth_failed() -> None:
    """Without a key a fresh well-formed token cannot be judged: the generic verdict."""
    d = diag(failed_auth())
    assert cause(d) == "auth-failed-after-upgrade"


def test_old_token_is_token_expired() -> None:
    """Token 45 days old at capture time + 认证失败: token-expired."""
    old = token_for(ts=TS - 45 * 86_400)
    d = diag(failed_auth(set_headers={"Authorization": f"Bearer {old}"}))
    assert cause(d) == "token-expired"


def test_expiry_uses_configured_lifetime() -> None:
    """expire_seconds of 1 day makes a 2-day-old token expired."""
    old = token_for(ts=TS - 2 * 86_400)
    hs = failed_auth(set_headers={"Authorization": f"Bearer {old}"})
    assert cause(diag(hs, Config(token_max_age_s=86_400))) == "token-expired"
    assert cause(diag(hs)) != "token-expired"


def test_expiry_uses_now_when_capture_time_unknown() -> None:
    """No timestamps in the handshake: now_ns is the reference."""
    hs = failed_auth()
    assert hs.request is not None
    untimed = replace(hs, request=replace(hs.request, ts_ns=0), transport=replace(hs.transport, first_ns=0))
    assert cause(diag(untimed, now_ns=T0 + 40 * DAY_NS)) == "token-expired"


def test_ota_token_for_other_client_id_is_bound_to_other_device() -> None:
    """OTA issued the token for another Client-Id: token-bound-to-other-device."""
    hs = failed_auth(set_headers={"Client-Id": "99999999-9a7d-4e21-b0c4-5d6e7f809a1b"})
    d = diag(hs, otas=[make_ota()])
    assert cause(d) == "token-bound-to-other-device"


def test_key_shows_token_signed_for_upper_case_device() -> None:
    """With the key: the HMAC verifies for the upper-case Device-Id → bound to other device."""
    tok = token_for(device=DEVICE.upper())
    d = diag(failed_auth(set_headers={"Authorization": f"Bearer {tok}"}), KEYED)
    assert cause(d) == "token-bound-to-other-device"
    assert "token-rejected" not in names(d)


def test_same_ids_as_ota_is_not_bound_elsewhere() -> None:
    """Same ids at OTA and WebSocket: nothing."""
    assert "token-bound-to-other-device" not in names(diag(make_handshake(), otas=[make_ota()]))


# --- auth-failed-after-upgrade ------------------------------------------------------------------


def test_auth_failed_text_is_auth_failed_after_upgrade() -> None:
    """认证失败 is an in-band rejection even after a 101: the handshake failed."""
    d = diag(failed_auth())
    assert d.cause is not None and d.cause.severity == Severity.ERROR


def test_json_alert_variant_is_auth_failed() -> None:
    """The a10e94be-era JSON alert also counts."""
    alert = {"type": "alert", "status": "ERROR", "message": "认证失败", "emotion": "sad"}
    d = diag(make_handshake(frames=(text("server", alert, 3), close("server", 1000, ms=4))))
    assert cause(d) == "auth-failed-after-upgrade"


def test_policy_close_is_generic_in_band_rejection() -> None:
    """Close 4001 right after the 101 (another server): auth-failed-after-upgrade."""
    d = diag(
        make_handshake(frames=(text("client", CLIENT_HELLO, 2), close("server", 4001, "unauthorized", 3)))
    )
    assert cause(d) == "auth-failed-after-upgrade"


def test_normal_session_close_is_not_a_rejection() -> None:
    """Close 1000 after a conversation: nothing."""
    frames = (
        text("client", CLIENT_HELLO, 3),
        text("server", {"type": "hello", "transport": "websocket"}, 40),
        close("server", 1000, ms=120_000),
    )
    assert diag(make_handshake(frames=frames)).findings == ()


def test_rejection_not_reported_on_silent_drop() -> None:
    """No 101: no in-band verdicts."""
    assert "auth-failed-after-upgrade" not in names(diag(silent_drop()))


def test_device_id_from_other_ota_ignored() -> None:
    """An OTA of a different device is not correlated."""
    other = make_ota(device="11:22:33:44:55:66", client="00000000-0000-4000-8000-000000000000")
    d = diag(make_handshake(), otas=[replace(other, client=Endpoint("192.168.1.99", 5000))])
    assert d.findings == ()


def test_token_for_sibling_mac_is_bound_to_other_device() -> None:
    """With the key: a token signed for the base MAC +1 (the ESP32's AP MAC) is bound elsewhere."""
    tok = token_for(device="a0:b7:65:12:34:57")
    d = diag(failed_auth(set_headers={"Authorization": f"Bearer {tok}"}), KEYED)
    assert cause(d) == "token-bound-to-other-device"
    assert d.cause is not None and "a0:b7:65:12:34:57" in d.cause.message


def test_no_key_mismatch_claim_without_client_id() -> None:
    """Without Client-Id the signed client id is unknown: missing-client-id, not a key mismatch."""
    d = diag(failed_auth(set_headers={"Client-Id": None}), KEYED)
    assert cause(d) == "missing-client-id"
    assert "token-rejected" not in names(d)
