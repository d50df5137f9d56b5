"""WS2xx: the xiaozhi-esp32-server contract (identity headers, tokens, in-band rejections).

xiaozhi-server upgrades first and rejects after the 101 (xiaozhi-protocol.md §1.3-1.4), so these
rules read the request *and* the frames. A request-side defect is an ERROR only when the frames
show the rejection it explains; otherwise it is a WARNING (auth known to be on) or nothing.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from analyzer.model import Handshake, HttpResponse, Outcome, Severity
from analyzer.rules._facts import (
    MAC_ESP32_RE,
    MAC_MANAGER_RE,
    TOKEN_RE,
    UUID_RE,
    AfterUpgrade,
    Identity,
    Rejection,
    after_upgrade,
    bearer_token,
    credential_elsewhere,
    describe_answer,
    frame_ref,
    header_line,
    identity,
    is_browser,
    mac_neighbours,
    ota_for,
    ota_websocket,
    query_of,
    token_ts,
    verifies,
)
from analyzer.rules._rule import Context, Hit, rule

AUTH_REJECTIONS = (Rejection.AUTH_FAILED, Rejection.SILENT_CLOSE)


def _auth_state(hs: Handshake, ctx: Context) -> str:
    """Returns "rejected" (in-band auth failure), "accepted", "unknown" (upgraded, no verdict) or "n/a"."""
    if hs.outcome != Outcome.UPGRADED:
        return "n/a"
    a = after_upgrade(hs, True)
    if a.rejection in AUTH_REJECTIONS:
        return "rejected"
    if a.server_hello is not None or a.rejection == Rejection.NO_HELLO or a.server_data_before_close:
        return "accepted"
    return "unknown"


def _whitelisted(ident: Identity, ctx: Context) -> bool:
    return ident.device_id is not None and ident.device_id in ctx.config.allowed_devices


def _auth_hit(hs: Handshake, ctx: Context, message: str, evidence: str, rank: int) -> Iterator[Hit]:
    """Yield `message` as ERROR when the server rejected auth, as WARNING when auth is known on."""
    state = _auth_state(hs, ctx)
    if state == "rejected":
        yield Hit(message, evidence=evidence, rank=rank)
    elif state != "accepted" and ctx.config.auth_enabled:
        yield Hit(
            message + " (server.auth.enabled is true)",
            evidence=evidence,
            severity=Severity.WARNING,
            rank=rank + 50,
        )


CREDENTIAL_WORDS = re.compile(r"token|auth|credential|jwt|signature|api.?key", re.IGNORECASE)


def _generic_401(hs: Handshake) -> bool:
    """A 401 from anyone (xiaozhi never answers one), or a 403 whose body talks of tokens or
    authentication (`invalid token`): credentials were asked for, or refused."""
    resp = hs.response
    if resp is None:
        return False
    said = resp.body[:512].decode("utf-8", "replace")
    return resp.status == 401 or (resp.status == 403 and bool(CREDENTIAL_WORDS.search(said)))


BROWSER_TOKEN_FIX = (
    "A browser cannot set Authorization (or any header) on a WebSocket: pass the token in the URL "
    "query (`?token=`), a cookie or `Sec-WebSocket-Protocol`, and have the server read it there."
)


def _status(resp: HttpResponse) -> str:
    """`401`, or `403 'invalid token'`: the status, and the body when it says why."""
    said = " ".join(resp.body[:80].decode("utf-8", "replace").split())
    return f"{resp.status} {said!r}" if resp.status != 401 and said else str(resp.status)


def _asks_for(resp: HttpResponse) -> str:
    challenge = resp.header("www-authenticate")
    return f" (WWW-Authenticate: {challenge.strip()[:80]})" if challenge else ""


def _old_server(a: AfterUpgrade) -> str:
    return " (a ≤ v0.8.3 server closes silently)" if a.rejection == Rejection.SILENT_CLOSE else ""


@rule(
    "WS201",
    "missing-device-id",
    Severity.ERROR,
    rank=20,
    xiaozhi_only=True,
    title="No Device-Id (header or `device-id` query key): xiaozhi answers 端口正常… and closes",
    fix="Send `Device-Id: <lower-case MAC>`; browsers put `?device-id=…&client-id=…` in the URL "
    "(exact lower-case keys with hyphens).",
)
def missing_device_id(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The request has no `Device-Id` header and no `device-id` query key, or the server answered
    the 101 with the text `端口正常…` (it found none), or a Java server closed with 1007 `设备ID为空`.
    Also reported on an OTA exchange whose request lacks `Device-Id` and was refused.

    Why it is refused:
    xiaozhi-server reads the device id after the 101; without one it sends the text
    `端口正常…请启动digital-human测试` (≥ v0.9.4; `端口正常…请使用test_page.html` in
    v0.4.1-v0.9.3) and closes with 1000. Query keys are case-sensitive (`device_id=` and
    `Device-Id=` are ignored); a `Device_Id` header is a different header; a proxy may drop it.

    Example:
    `GET /xiaozhi/v1/?device_id=a0:b7:65:12:34:56 HTTP/1.1` → 101, text `端口正常…`, Close 1000.

    Fix:
    Send the `Device-Id` header, or `?device-id=<mac>&client-id=<uuid>` for browsers.

    References:
    xiaozhi-server `core/websocket_server.py` `_handle_connection`; xiaozhi-protocol.md §1.3,
    §6 row 10; field-failures C1.
    """
    req = hs.request
    if req is None:
        return
    a = after_upgrade(hs, True)
    ident = identity(req)
    if a.rejection == Rejection.NO_IDENTITY and a.server_text is not None:
        text = a.server_text.text or ""
        version = (
            " (server ≥ v0.9.4)"
            if "digital-human" in text
            else " (server v0.4.1-v0.9.3)"
            if "test_page" in text
            else ""
        )
        yield Hit(
            f"the server found no device id and answered {text!r}{version}: {_why_no_id(hs)}",
            evidence="text 端口正常…" + frame_ref(a.server_text),
        )
    elif a.rejection == Rejection.BAD_DATA and a.server_close is not None:
        reason = a.server_close.close_reason or ""
        if "设备" in reason or ident.device_id is None:
            yield Hit(
                f"the server closed with 1007 {reason!r}: {_why_no_id(hs)}",
                evidence="Close 1007" + frame_ref(a.server_close),
            )
    elif ident.device_id is None and hs.outcome != Outcome.UPGRADED:
        yield Hit(
            f"no device id in the request: {_why_no_id(hs)}; xiaozhi-server would answer 端口正常 after "
            "the 101",
            evidence=header_line(req, "Device-Id"),
            severity=Severity.WARNING,
            rank=70,
        )


def _why_no_id(hs: Handshake) -> str:
    assert hs.request is not None
    req = hs.request
    if req.headers_named("device-id"):
        return "the request carries Device-Id, so something between (a proxy) dropped it"
    near = [k for k in query_of(req) if k.lower().replace("_", "-") == "device-id"]
    if near:
        return f"the query key {near[0]!r} is ignored: it must be exactly `device-id`"
    under = [n for n, _ in req.headers if n.lower() == "device_id"]
    if under:
        return f"the header {under[0]!r} is ignored: it must be `Device-Id`"
    return "neither a Device-Id header nor a device-id query key"


@rule(
    "WS202",
    "malformed-device-id",
    Severity.WARNING,
    rank=50,
    xiaozhi_only=True,
    title="Device-Id is not a lower-case colon-separated MAC",
    fix="Send the MAC as the firmware does: `%02x:%02x:…` lower-case with colons, the same string as in OTA.",
)
def malformed_device_id(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    `Device-Id` differs from the firmware's format `aa:bb:cc:dd:ee:ff` (lower-case, colons):
    upper case or `-`, or not a MAC at all (the manager-api OTA regex is
    `^([0-9A-Za-z]{2}[:-]){5}([0-9A-Za-z]{2})$`). An error when a lower-case whitelist entry
    was missed after 认证失败, or when the OTA answered `{"error":"Invalid device ID"}`.

    Why it is refused:
    The WebSocket server does not validate the format, but everything keyed on it is exact:
    `allowed_devices` membership and the token's HMAC are case-sensitive, and the manager-api
    OTA answers `{"error":"Invalid device ID"}` for a non-MAC. An upper-case id therefore misses a
    lower-case whitelist entry (→ 认证失败) or a token issued for the lower-case id.

    Example:
    `Device-Id: A0:B7:65:12:34:56`

    Fix:
    Normalise to lower case with colons everywhere (client, OTA call, whitelist).

    References:
    xiaozhi-protocol.md §1.4, §3.2, §5; field-failures C2.
    """
    if hs.request is None:
        return
    ident = identity(hs.request)
    dev = ident.device_id
    if dev is None or MAC_ESP32_RE.match(dev):
        return
    if UUID_RE.match(dev) and ident.client_id is not None and UUID_RE.match(ident.client_id):
        return  # the manager-api's own config-push client uses random UUIDs (spec §4.3)
    ev = f"device-id {dev!r} ({ident.source})"
    if MAC_MANAGER_RE.match(dev):
        canon = dev.lower().replace("-", ":")
        listed = canon in ctx.config.allowed_devices
        if listed and _auth_state(hs, ctx) == "rejected":
            yield Hit(
                f"Device-Id {dev!r} is not the whitelisted {canon!r}: allowed_devices is case-sensitive, "
                "so the device fell through to the token check",
                evidence=ev,
                severity=Severity.ERROR,
                rank=12,
            )
        else:
            yield Hit(
                f"Device-Id {dev!r} is not lower-case with colons; whitelist and token binding are "
                "case-sensitive",
                evidence=ev,
            )
    else:
        yield Hit(
            f"Device-Id {dev!r} is not a MAC: the manager-api OTA rejects it (Invalid device ID) and "
            "cannot bind it",
            evidence=ev,
            rank=55,
        )


def _normal_mac(mac: str) -> str:
    return mac.lower().replace("-", ":")


def _same_l2(hs: Handshake) -> bool:
    try:
        a, b = ipaddress.ip_address(hs.client.ip), ipaddress.ip_address(hs.server.ip)
    except ValueError:
        return False
    if a.is_loopback or b.is_loopback or a.version != b.version:
        return False
    if a.version == 6:
        return a.is_link_local and b.is_link_local
    return ipaddress.ip_network(f"{a}/24", strict=False) == ipaddress.ip_network(f"{b}/24", strict=False)


@rule(
    "WS203",
    "device-id-mismatch",
    Severity.WARNING,
    rank=75,
    xiaozhi_only=True,
    title="Device-Id is not the sender's link-layer MAC",
    fix="Send the device's own station MAC as Device-Id, the same value the OTA call used.",
)
def device_id_mismatch(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The Ethernet/Wi-Fi source MAC of the client's packets differs from the MAC in `Device-Id`.
    Only when the capture has a real link layer (not loopback's zero MACs) and client and server
    look like the same LAN (same /24), since through a router the source MAC is the router's.

    Why it is refused:
    Not refused by the handshake itself: the server never sees MACs. But the device id is the
    key of binding, whitelist and token; a Device-Id copied from another board, a hard-coded
    value, or py-xiaozhi's "first interface" MAC lead to 认证失败 or an unbound device.

    Example:
    Ethernet source `24:0a:c4:11:22:33`, header `Device-Id: a0:b7:65:12:34:56`.

    Fix:
    Use the board's own MAC (the firmware does: `ESP_MAC_WIFI_STA`).

    References:
    xiaozhi-protocol.md §3.2; field-failures C2, C6.
    """
    req, mac = hs.request, hs.client_mac
    if req is None or mac is None or _normal_mac(mac) in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"):
        return
    dev = identity(req).device_id
    if dev is None or not MAC_MANAGER_RE.match(dev) or req.target.endswith("from=mqtt_gateway"):
        return
    if _normal_mac(dev) != _normal_mac(mac) and _same_l2(hs):
        yield Hit(
            f"Device-Id {dev} is not the sender's MAC {mac} (same LAN as the server)",
            evidence=f"link-layer source {mac}; {header_line(req, 'Device-Id')}",
        )


@rule(
    "WS204",
    "missing-client-id",
    Severity.WARNING,
    rank=75,
    xiaozhi_only=True,
    title="No Client-Id (header or `client-id` query key)",
    fix="Send `Client-Id: <the board UUID>`, the same value the OTA call used.",
)
def missing_client_id(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    Neither a `Client-Id` header nor (with the query fallback) a `client-id` query key; an error
    when the server then rejected the token, or when the single-module OTA refused the request
    (`{"success": false, "message": "request error."}`).

    Why it is refused:
    Tokens are HMACs over `client_id|device_id|ts`; without Client-Id the server verifies with
    the string `None`, so a token the OTA issued for the device's UUID fails → 认证失败. The
    firmware always sends it (since v1.2.1).

    Example:
    `Authorization: Bearer …` and `Device-Id: …` but no `Client-Id`.

    Fix:
    Send `Client-Id` (the UUID stored in NVS, or the one sent to OTA).

    References:
    xiaozhi-server `core/auth.py` `AuthManager`; xiaozhi-protocol.md §1.4; field-failures C6.
    """
    if hs.request is None:
        return
    ident = identity(hs.request)
    if ident.client_id is not None:
        return
    token = bearer_token(ident.authorization)
    key = ctx.config.auth_key
    if token and key and ident.device_id and verifies(key, token, None, ident.device_id):
        return
    state = _auth_state(hs, ctx)
    if state == "rejected" and token:
        yield Hit(
            "no Client-Id: the server verifies the token with client id 'None', while OTA signs it with "
            "the device's Client-Id",
            evidence=header_line(hs.request, "Client-Id"),
            severity=Severity.ERROR,
            rank=15,
        )
    elif state != "accepted":
        yield Hit("no Client-Id header or client-id query key", evidence=header_line(hs.request, "Client-Id"))


@rule(
    "WS205",
    "malformed-client-id",
    Severity.WARNING,
    rank=80,
    xiaozhi_only=True,
    title="Client-Id is not a UUID",
    fix="Send the board UUID (8-4-4-4-12 hex), the same value the OTA call used.",
)
def malformed_client_id(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    `Client-Id` that is not a UUID (`web_test_client`, the test page's default, is reported as
    information only).

    Why it is refused:
    The server accepts any string, but the token is bound to it and the manager-api keys
    sessions on it; a made-up id rarely matches the one the OTA call used.

    Example:
    `Client-Id: my-client`

    Fix:
    Use the UUID the firmware stores in NVS (`board/uuid`), the same at OTA and WebSocket.

    References:
    xiaozhi-protocol.md §3.2, §4.2.
    """
    if hs.request is None:
        return
    client = identity(hs.request).client_id
    if client is None or UUID_RE.match(client):
        return
    if client == "web_test_client":
        yield Hit(
            "Client-Id is the browser test page's default 'web_test_client'",
            evidence=f"client-id {client!r}",
            severity=Severity.INFO,
            rank=95,
        )
    else:
        yield Hit(f"Client-Id {client!r} is not a UUID", evidence=f"client-id {client!r}")


def _ota_note(hs: Handshake, ctx: Context) -> str:
    ota = ota_for(hs, ctx.lookup.otas)
    ws = ota_websocket(ota) if ota is not None else None
    if ota is None or ws is None:
        return ""
    token = ws.get("token")
    if token == "" or token is None:
        return (
            "; the OTA answer carried no token: server.auth.enabled is off in the manager-api "
            "(or was toggled without restarting xiaozhi-server)"
        )
    return "; the OTA answer did give a token, which the client did not send"


@rule(
    "WS206",
    "missing-token",
    Severity.ERROR,
    rank=10,
    title="No Authorization (header or `authorization` query key) while the server requires a token",
    fix="Send `Authorization: Bearer <websocket.token from the OTA answer>`; or whitelist the device id "
    "(exact, lower-case) in server.auth.allowed_devices.",
)
def missing_token(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The request has no `Authorization` (nor, with the query fallback, an `authorization` query
    key) and the server rejected auth: `认证失败` after the 101 (≥ v0.8.5), a silent Close 1000
    (≤ v0.8.3), or a plain 401 from another server.

    Why it is refused:
    With `server.auth.enabled` (the default with the manager-api since v0.8.10) every device not
    in `allowed_devices` must present the HMAC token the OTA answer issued. The firmware omits the
    header when OTA gave an empty token; the whitelist compares case-sensitively.

    Example:
    Request without `Authorization` → 101, text `认证失败`, Close 1000.

    Fix:
    Let OTA hand out the token (auth enabled in the manager-api, restart xiaozhi-server after
    toggling), or whitelist the exact device id.

    References:
    xiaozhi-server `core/websocket_server.py` `_handle_auth`; xiaozhi-protocol.md §1.4, §6 rows 1,
    7-9; field-failures C3.
    """
    req = hs.request
    if req is None:
        return
    ident = identity(req)
    if ident.authorization is not None:
        return
    if _generic_401(hs) and hs.response is not None:
        if credential_elsewhere(req) is not None:
            return  # token-rejected: the credential it sent was refused
        yield Hit(
            f"the server answered {_status(hs.response)}{_asks_for(hs.response)} and the request carries no "
            "credential",
            evidence=describe_answer(hs.response),
            rank=15,
            fix=BROWSER_TOKEN_FIX
            if is_browser(req)
            else "Send the credential the server asks for, usually `Authorization: Bearer <token>`.",
        )
        return
    if not ctx.xiaozhi or (_whitelisted(ident, ctx) and _auth_state(hs, ctx) != "rejected"):
        return
    note = _ota_note(hs, ctx)
    if ident.source == "header" and "authorization" in query_of(req):
        note += "; an authorization query key is ignored because Device-Id came as a header"
    dev = ident.device_id or ""
    listed = [d for d in ctx.config.allowed_devices if d.lower() == dev.lower() and d != dev]
    if listed:
        note += (
            f"; allowed_devices lists {listed[0]!r}, which differs from Device-Id {dev!r} only in letter "
            "case (the match is case-sensitive; ESP32 firmware sends lower case)"
        )
    a = after_upgrade(hs, True)
    msg = f"no Authorization in the request and the server rejected auth{_old_server(a)}{note}"
    yield from _auth_hit(hs, ctx, msg, header_line(req, "Authorization"), 10)


@rule(
    "WS207",
    "malformed-authorization",
    Severity.ERROR,
    rank=10,
    xiaozhi_only=True,
    title="Authorization does not start with the exact bytes `Bearer `",
    fix="Send `Authorization: Bearer <token>` (capital B, one space, non-empty token).",
)
def malformed_authorization(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    `Authorization` present but not starting with `Bearer ` (case-sensitive): `bearer …`,
    `Token …`, a bare token, or `Bearer ` with an empty token (trailing blanks are stripped, so it
    becomes `Bearer`).

    Why it is refused:
    xiaozhi-server's `_handle_auth` requires the exact prefix and fails with `Missing or invalid
    Authorization header` (not sent on the wire: the client only sees `认证失败`).

    Example:
    `Authorization: bearer Xw3…` → 101, `认证失败`, Close 1000.

    Fix:
    Prefix the token with `Bearer ` exactly.

    References:
    xiaozhi-protocol.md §1.4 (step 3), §6 row 2.
    """
    req = hs.request
    if req is None:
        return
    auth = identity(req).authorization
    if auth is None or bearer_token(auth) is not None:
        return
    shown = auth if len(auth) <= 24 else auth[:21] + "..."
    why = "the token is empty" if auth.rstrip() == "Bearer" else "it must start with `Bearer ` exactly"
    a = after_upgrade(hs, True)
    yield from _auth_hit(
        hs, ctx, f"Authorization {shown!r}: {why}{_old_server(a)}", header_line(req, "Authorization"), 10
    )


def _shape_problem(token: str) -> str | None:
    if TOKEN_RE.match(token):
        return None
    if token == "test-token":
        return "it is the placeholder 'test-token' (py-xiaozhi / mqtt-gateway default)"
    if token.count(".") == 2 and token.startswith("eyJ"):
        return "it is a JWT, not a xiaozhi HMAC token"
    return "it is not of the form <43-char signature>.<unix time>"


def _candidates(ident: Identity, ctx: Context) -> list[tuple[str | None, str]]:
    """(client_id, device_id) pairs a token might have been signed for."""
    dev, client = ident.device_id or "", ident.client_id
    devices = {dev, dev.lower(), dev.upper(), dev.replace("-", ":"), dev.lower().replace("-", ":")}
    devices.update(mac_neighbours(dev))
    clients: set[str | None] = {client, None, dev, *(d for d in devices)}
    pairs: set[tuple[str | None, str]] = {(c, d) for c in clients for d in devices if d}
    for ota in ctx.otas:
        d = ota.request.header("device-id")
        if d:
            pairs.add((ota.request.header("client-id") or d, d))
    pairs.discard((client, dev))
    return sorted(pairs, key=lambda p: (str(p[0]), p[1]))


def _signed_for(token: str, ident: Identity, ctx: Context) -> tuple[str | None, str] | None:
    key = ctx.config.auth_key
    if key is None:
        return None
    return next((p for p in _candidates(ident, ctx) if verifies(key, token, p[0], p[1])), None)


@rule(
    "WS208",
    "token-rejected",
    Severity.ERROR,
    rank=10,
    title="The token is not one this server accepts (shape, static token, or signed with another key)",
    fix="Use the token of this server's OTA answer; make server.auth_key equal the manager-api's "
    "server.secret (and set it, or xiaozhi-server makes a random key at every start).",
)
def token_rejected(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A `Bearer` token that does not match `^[A-Za-z0-9_-]{43}\\.[0-9]{9,11}$` (`test-token`, a JWT,
    an old static token), any token an old server (≤ v0.8.3) closed on silently, a 401 from
    another server, and, with `--auth-key`, a well-formed token whose HMAC does not verify with
    the key for any plausible ids (a key mismatch).

    Why it is refused:
    xiaozhi-server ≥ v0.8.5 accepts only `base64url(HMAC-SHA256(key, client|device|ts)).ts`. The
    key is `server.auth_key`, else `manager-api.secret`, else a random one per start; the
    manager-api signs with `server.secret`. Any mismatch is `认证失败`, with nothing logged.

    Example:
    `Authorization: Bearer test-token` → 101, `认证失败`, Close 1000.

    Fix:
    Use the OTA-issued token; align `server.auth_key` with `server.secret`; for the MQTT gateway
    set its server secret.

    References:
    xiaozhi-server `core/auth.py`; xiaozhi-protocol.md §1.4, §1.6, §6 rows 3, 6, 9; field-failures C3.
    """
    req = hs.request
    if req is None:
        return
    ident = identity(req)
    token = bearer_token(ident.authorization)
    elsewhere = credential_elsewhere(req) if ident.authorization is None else None
    if _generic_401(hs) and hs.response is not None and (ident.authorization or elsewhere is not None):
        yield Hit(
            f"the server answered {_status(hs.response)}{_asks_for(hs.response)} to the credential in "
            f"{elsewhere or 'the Authorization header'}",
            evidence=describe_answer(hs.response),
            rank=15,
            fix="Send a credential this server accepts (valid, not expired, for this user, where it reads "
            "it); its log says why it refused this one.",
        )
        return
    if token is None:
        return
    if not ctx.xiaozhi or (_whitelisted(ident, ctx) and _auth_state(hs, ctx) != "rejected"):
        return
    a = after_upgrade(hs, True)
    ev = header_line(req, "Authorization")
    problem = _shape_problem(token)
    if problem is not None:
        yield from _auth_hit(hs, ctx, f"the token was rejected: {problem}{_old_server(a)}", ev, 10)
    elif a.rejection == Rejection.SILENT_CLOSE:
        yield Hit(
            "the server closed right after the 101 without text: a ≤ v0.8.3 server whose static "
            "server.auth.tokens list does not hold this token",
            evidence=ev,
            rank=10,
        )
    elif ctx.config.auth_key and ident.device_id is not None:
        yield from _key_check(hs, ctx, token, ident, ev)


def _key_check(hs: Handshake, ctx: Context, token: str, ident: Identity, ev: str) -> Iterator[Hit]:
    key = ctx.config.auth_key
    assert key is not None and ident.device_id is not None
    if verifies(key, token, ident.client_id, ident.device_id) or _signed_for(token, ident, ctx):
        return  # valid for these ids (age is token-expired's), or bound to others (token-bound…'s)
    if ident.client_id is None:
        return  # signed for a Client-Id we cannot know: missing-client-id explains it, not the key
    state = _auth_state(hs, ctx)
    msg = "the signature does not verify with the given key for any of the ids: key mismatch"
    if state == "rejected":
        yield Hit(
            msg + " (server.auth_key ≠ manager-api server.secret, or a random key after a restart)",
            evidence=ev,
            rank=12,
        )
    elif state == "accepted":
        yield Hit(
            msg + "; the server accepted it, so auth is off or the given key is not the server's",
            evidence=ev,
            severity=Severity.INFO,
            rank=95,
        )
    else:
        yield Hit(msg, evidence=ev, severity=Severity.WARNING, rank=60)


@rule(
    "WS209",
    "token-expired",
    Severity.ERROR,
    rank=8,
    xiaozhi_only=True,
    title="The token's timestamp is older than the server's token lifetime (30 days by default)",
    fix="Reboot the device (it fetches a fresh token from OTA only at boot), or raise "
    "server.auth.expire_seconds.",
)
def token_expired(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A well-formed token whose `ts` is more than `token_max_age_s` (30 days, or
    `server.auth.expire_seconds`) before the handshake's capture time.

    Why it is refused:
    `AuthManager.verify_token` rejects `now - ts > expire_seconds` before checking the HMAC. The
    firmware fetches its token only at boot (OTA), so a device up for more than 30 days presents
    an expired token → `认证失败`.

    Example:
    `Authorization: Bearer …Xw3.1700000000` captured 45 days later.

    Fix:
    Reboot the device or let it re-run OTA; raise `server.auth.expire_seconds` if uptimes are long.

    References:
    xiaozhi-server `core/auth.py`; xiaozhi-protocol.md §1.4, §3.1, §6 row 4.
    """
    req = hs.request
    if req is None or not ctx.now_ns:
        return
    token = bearer_token(identity(req).authorization)
    ts = token_ts(token) if token else None
    if ts is None:
        return
    age = ctx.now_ns // 1_000_000_000 - ts
    if age <= ctx.config.token_max_age_s:
        return
    days, limit = age / 86400, ctx.config.token_max_age_s / 86400
    msg = f"the token was issued {days:.1f} days before this handshake (lifetime {limit:g} days)"
    yield from _auth_hit(hs, ctx, msg, f"token timestamp {ts}", 8)


@rule(
    "WS210",
    "token-bound-to-other-device",
    Severity.ERROR,
    rank=9,
    xiaozhi_only=True,
    title="The token was issued for other Device-Id/Client-Id strings than this request sends",
    fix="Send exactly the Device-Id and Client-Id (same letter case) that the OTA call used, or redo OTA "
    "after changing them (NVS erase makes a new Client-Id).",
)
def token_bound_to_other_device(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The OTA answer in the capture that issued this token was requested with other
    `Device-Id`/`Client-Id` values (even only in letter case); or, with `--auth-key`, the
    token's HMAC verifies for other ids than the request's: other letter case, `-` for `:`,
    a missing or defaulted Client-Id, the ids of OTA requests in the capture, or the ESP32's
    sibling MACs (base MAC +1..3 for AP, Bluetooth, Ethernet).

    Why it is refused:
    The token signs `client_id|device_id|ts` with the exact strings of the OTA request; the
    server recomputes it with the WebSocket request's strings (a missing Client-Id counts as
    `None`; the manager-api uses the Device-Id when OTA had no Client-Id).

    Example:
    OTA `Device-Id: a0:b7:65:12:34:56`, WebSocket `Device-Id: A0:B7:65:12:34:56` → `认证失败`.

    Fix:
    Use identical ids at OTA and WebSocket; redo OTA after an NVS erase or MAC change.

    References:
    xiaozhi-protocol.md §1.4, §5, §6 row 5; field-failures C6.
    """
    req = hs.request
    if req is None:
        return
    ident = identity(req)
    token = bearer_token(ident.authorization)
    if token is None or ident.device_id is None:
        return
    for ota in ctx.lookup.otas.by_token.get(token, ()):
        ota_dev = ota.request.header("device-id") or ""
        ota_client = ota.request.header("client-id") or ota_dev
        if (ota_dev, ota_client) != (ident.device_id, ident.client_id or "None"):
            msg = (
                f"the OTA answer issued this token for device-id {ota_dev!r} / client-id {ota_client!r}, "
                f"the request sends {ident.device_id!r} / {ident.client_id!r}"
            )
            yield from _auth_hit(hs, ctx, msg, f"OTA exchange at stream {ota.tcp_stream}", 9)
            return
    key = ctx.config.auth_key
    if key and TOKEN_RE.match(token) and not verifies(key, token, ident.client_id, ident.device_id):
        other = _signed_for(token, ident, ctx)
        if other is not None:
            msg = (
                f"the token is signed for client-id {other[0]!r} / device-id {other[1]!r}, not the request's"
            )
            yield from _auth_hit(hs, ctx, msg, "HMAC verified with --auth-key", 9)


def _key_note(hs: Handshake, ctx: Context) -> str:
    """With --auth-key: a fresh token that verifies for the request's own ids was still refused, so the
    server checks with another key (spec §1.4 "Where the key comes from", §6 row 6)."""
    key = ctx.config.auth_key
    if key is None or hs.request is None:
        return ""
    ident = identity(hs.request)
    token = bearer_token(ident.authorization)
    ts = token_ts(token) if token else None
    if token is None or ts is None or ident.device_id is None or ident.client_id is None:
        return ""
    if ctx.now_ns and ctx.now_ns // 1_000_000_000 - ts > ctx.config.token_max_age_s:
        return ""
    if not verifies(key, token, ident.client_id, ident.device_id):
        return ""
    return (
        "; the token is fresh and verifies with the given key for this request's own ids, so the server "
        "uses another key (server.auth_key ≠ manager-api server.secret, or a random key since its last "
        "restart because neither server.auth_key nor manager-api.secret is set)"
    )


@rule(
    "WS211",
    "auth-failed-after-upgrade",
    Severity.ERROR,
    rank=50,
    title="The server accepted the upgrade, then rejected the client in-band (认证失败 / an early Close)",
    fix="See the request-side findings; without one, the token is well-formed and fresh: check the key "
    "(pass --auth-key or --server-config to verify it offline).",
)
def auth_failed_after_upgrade(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    After the 101 the server sent the text `认证失败` (xiaozhi ≥ v0.8.5, Close 1000), closed
    with 1000 within 2 s and no text (xiaozhi ≤ v0.8.3), closed with 1008 or a 3000-4999 code
    before any data, or closed with 1011/1007 before any data.

    Why it is refused:
    xiaozhi-server authenticates after the upgrade, so a 101 does not mean success; the
    firmware logs `Missing message type, data: 认证失败` and waits out its hello timeout. This
    is the generic verdict; a specific request-side cause (missing/malformed/expired/foreign
    token) ranks before it when the request shows one.

    Example:
    101, then server text frame `认证失败`, then Close 1000.

    Fix:
    Fix the finding ranked first; otherwise verify the token with the server key.

    References:
    xiaozhi-server `core/websocket_server.py` `_handle_auth`; xiaozhi-protocol.md §1.4, §1.6,
    §6 rows 1-9; field-failures C3.
    """
    a = after_upgrade(hs, ctx.xiaozhi)
    close = a.server_close
    code = close.close_code if close is not None else None
    reason = f" {close.close_reason!r}" if close is not None and close.close_reason else ""
    if a.rejection == Rejection.AUTH_FAILED:
        yield Hit(
            "the server sent 认证失败 after the 101 and closed: token authentication failed"
            + _key_note(hs, ctx),
            evidence="text 认证失败" + frame_ref(a.server_text),
        )
    elif a.rejection == Rejection.SILENT_CLOSE:
        if ctx.xiaozhi:
            yield Hit(
                "the server closed (1000) right after the 101 without a word: a ≤ v0.8.3 xiaozhi-server "
                "rejecting the token",
                evidence="Close 1000" + frame_ref(close),
                rank=55,
            )
        else:
            yield Hit(
                f"the server closed ({code}) right after the 101, before any data",
                severity=Severity.WARNING,
                evidence=f"Close {code}{reason}" + frame_ref(close),
                rank=60,
            )
    elif a.rejection == Rejection.POLICY_CLOSE and (ctx.xiaozhi or CREDENTIAL_WORDS.search(reason or "")):
        yield Hit(
            f"the server closed with {code}{reason} right after the 101, before any data: it accepted "
            "the upgrade, then its handler refused the client (authentication or policy)",
            evidence=f"Close {code}" + frame_ref(close),
            rank=60,
            fix=None
            if ctx.xiaozhi
            else "The application refused the client after accepting it: send the credential or meet the "
            "policy its close reason names; its log says which.",
        )
    elif a.rejection == Rejection.CRASH:
        yield Hit(
            "the server closed with 1011 (internal error) right after the 101: its handler raised "
            "(xiaozhi: a repeated identity header)",
            evidence="Close 1011" + frame_ref(close),
            rank=80,
        )
    elif a.rejection == Rejection.BAD_DATA and "设备" not in (reason or ""):
        yield Hit(
            f"the server closed with 1007{reason} right after the 101",
            evidence="Close 1007" + frame_ref(close),
            rank=80,
        )


RULES = (
    missing_device_id,
    malformed_device_id,
    device_id_mismatch,
    missing_client_id,
    malformed_client_id,
    missing_token,
    malformed_authorization,
    token_rejected,
    token_expired,
    token_bound_to_other_device,
    auth_failed_after_upgrade,
)
