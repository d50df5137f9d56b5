"""The registry, the engine (selection, profiles, ordering, cause) and the good-handshake guarantee."""

from __future__ import annotations

import re

import pytest
from factories import (
    CLIENT,
    CLIENT_HELLO,
    DEVICE,
    KEY,
    TOKEN,
    auth_failed_frames,
    cause,
    diag,
    make_handshake,
    make_request,
    names,
    no_identity_frames,
    server_is_running,
    silent_drop,
    switching,
    text,
)

from analyzer.config import Config
from analyzer.model import Severity
from analyzer.rules import CAUSE_NAMES, RULES, diagnose, find_rule
from analyzer.rules._rule import DOC_SECTIONS, Rule

REQUIRED_NAMES = [
    "port-closed",
    "no-answer",
    "connection-reset",
    "tls-to-plain-port",
    "plain-to-tls-port",
    "tls-handshake-failed",
    "redirect",
    "wrong-path",
    "missing-upgrade-headers",
    "connection-token-list",
    "bad-websocket-key",
    "bad-websocket-version",
    "bad-websocket-accept",
    "origin-rejected",
    "subprotocol-mismatch",
    "missing-device-id",
    "malformed-device-id",
    "device-id-mismatch",
    "missing-client-id",
    "malformed-client-id",
    "missing-token",
    "malformed-authorization",
    "token-rejected",
    "token-expired",
    "token-bound-to-other-device",
    "duplicate-header",
    "underscore-header",
    "http10-request",
    "missing-host",
    "server-is-running-page",
    "wrong-service",
    "proxy-rejected",
    "auth-failed-after-upgrade",
    "no-server-hello",
    "ota-url-unreachable",
    "ota-url-mismatch",
]


# --- registry -----------------------------------------------------------------------------------


def test_codes_are_unique_and_well_formed() -> None:
    """Codes match WS\\d{3}, are unique and in order."""
    codes = [r.code for r in RULES]
    assert all(re.fullmatch(r"WS\d{3}", c) for c in codes)
    assert len(set(codes)) == len(codes)
    assert codes == sorted(codes)


def test_names_are_unique_kebab_case() -> None:
    """Names are kebab-case and unique."""
    assert all(re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r.name) for r in RULES)
    assert len(set(CAUSE_NAMES)) == len(CAUSE_NAMES)


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.code)
def test_docstring_has_all_sections(rule: Rule) -> None:
    """Every rule's documentation has the five sections, in order, and a title and fix."""
    doc = rule.doc
    positions = [doc.find(f"{s}:") for s in DOC_SECTIONS]
    assert all(p >= 0 for p in positions), doc
    assert positions == sorted(positions)
    assert rule.title and rule.fix


def test_every_required_cause_name_has_a_rule() -> None:
    """Each cause name of issue 3 is produced by a rule."""
    assert set(REQUIRED_NAMES) <= set(CAUSE_NAMES)


def test_find_rule_by_code_or_name() -> None:
    """`wsdiag explain` looks rules up by code (any case) or name."""
    r = find_rule("ws104")
    assert r is not None and r.name == "missing-upgrade-headers"
    token = find_rule("missing-token")
    assert token is not None and find_rule(token.code) is token
    assert find_rule("nope") is None


# --- selection ----------------------------------------------------------------------------------


def test_ignore_by_name_moves_the_verdict() -> None:
    """Ignoring the specific cause leaves the generic one."""
    hs = make_handshake(make_request(set_headers={"Authorization": None}), frames=auth_failed_frames())
    assert cause(diag(hs, Config(ignore=("missing-token",)))) == "auth-failed-after-upgrade"


def test_select_by_prefix() -> None:
    """`--select WS0` keeps only transport rules."""
    d = diag(silent_drop(make_request(version="HTTP/1.0")), Config(select=("WS0",)))
    assert {f.code[:3] for f in d.findings} == {"WS0"}


# --- engine -------------------------------------------------------------------------------------


def test_findings_sorted_and_cause_first() -> None:
    """Findings are ordered by severity then rank; the cause is the first error."""
    req = make_request(set_headers={"Connection": "keep-alive, Upgrade"}, add_headers=[("X_Y", "1")])
    d = diag(make_handshake(req, server_is_running()))
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
    keys = [(order[f.severity], f.rank) for f in d.findings]
    assert keys == sorted(keys)
    assert d.cause == d.findings[0]


def test_every_diagnosis_has_a_reproduce_command() -> None:
    """Reproduce is filled for request and SYN-only handshakes."""
    assert diag(make_handshake()).reproduce
    assert diag(silent_drop()).reproduce


def test_diagnose_keeps_input_order() -> None:
    """One Diagnosis per handshake, same order."""
    a, b = make_handshake(), silent_drop()
    out = diagnose([a, b], [], Config())
    assert [d.handshake for d in out] == [a, b]


def test_profile_rfc6455_turns_off_xiaozhi_rules() -> None:
    """--profile rfc6455: no xiaozhi contract findings even on 端口正常."""
    req = make_request(set_headers={"Device-Id": None})
    d = diag(make_handshake(req, frames=no_identity_frames()), Config(profile="rfc6455"))
    assert "missing-device-id" not in names(d)


def test_profile_auto_detects_by_response_text() -> None:
    """A plain client to /chat answered 端口正常 is xiaozhi: missing-device-id."""
    req = make_request(
        target="/chat",
        set_headers={"Device-Id": None, "Client-Id": None, "Protocol-Version": None, "Authorization": None},
    )
    assert cause(diag(make_handshake(req, frames=no_identity_frames()))) == "missing-device-id"


def test_profile_xiaozhi_forced() -> None:
    """--profile xiaozhi runs the contract on a generic-looking request."""
    req = make_request(
        target="/chat", set_headers={"Device-Id": None, "Client-Id": None, "Protocol-Version": None}
    )
    d = diag(silent_drop(req), Config(profile="xiaozhi"))
    assert "missing-device-id" in names(d)


# --- good handshakes from real software get no error --------------------------------------------

GOOD = {
    "esp32": make_request(),
    "esp32-no-token": make_request(set_headers={"Authorization": None}),
    "py-xiaozhi": make_request(
        headers=[
            ("Host", "192.168.1.10:8000"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
            ("Authorization", f"Bearer {TOKEN}"),
            ("Protocol-Version", "1"),
            ("Device-Id", DEVICE),
            ("Client-Id", CLIENT),
            ("User-Agent", "Python/3.12 websockets/15.0.1"),
        ]
    ),
    "browser-test-page": make_request(
        target=f"/xiaozhi/v1/?authorization=Bearer+{TOKEN}&device-id=A0:B7:65:12:34:56&client-id=web_test_client",
        headers=[
            ("Host", "192.168.1.10:8000"),
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Origin", "http://localhost:8006"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
            ("User-Agent", "Mozilla/5.0 Chrome/140"),
        ],
    ),
    "manager-api-client": make_request(
        headers=[
            ("Host", "192.168.1.10:8000"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
            ("device-id", "6f1c2d3e-aaaa-4bbb-8ccc-123456789abc"),
            ("client-id", "0a1b2c3d-aaaa-4bbb-8ccc-123456789abc"),
            ("authorization", "Bearer test-token"),
        ]
    ),
    "mqtt-gateway": make_request(
        target="/xiaozhi/v1/?from=mqtt_gateway",
        headers=[
            ("Host", "127.0.0.1:8000"),
            ("Connection", "Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", KEY),
            ("device-id", DEVICE),
            ("protocol-version", "2"),
            ("authorization", "Bearer test-token"),
            ("client-id", CLIENT),
            ("x-forwarded-for", "192.168.1.23"),
        ],
    ),
    "firefox-generic": make_request(
        target="/socket",
        headers=[
            ("Host", "example.com"),
            ("User-Agent", "Mozilla/5.0 Firefox/128.0"),
            ("Connection", "keep-alive, Upgrade"),
            ("Upgrade", "websocket"),
            ("Sec-WebSocket-Version", "13"),
            ("Origin", "https://example.com"),
            ("Sec-WebSocket-Extensions", "permessage-deflate"),
            ("Sec-WebSocket-Key", KEY),
        ],
    ),
    "lowercase-node-ws": make_request(
        target="/",
        headers=[
            ("host", "example.com:8080"),
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", KEY),
            ("sec-websocket-extensions", "permessage-deflate; client_max_window_bits"),
        ],
    ),
}


@pytest.mark.parametrize("name", sorted(GOOD))
def test_good_handshakes_have_no_error(name: str) -> None:
    """Real clients that upgraded and got a reply: no error finding, no cause."""
    req = GOOD[name]
    ext = (
        [("Sec-WebSocket-Extensions", "permessage-deflate")] if req.header("sec-websocket-extensions") else []
    )
    frames = (
        text("client", CLIENT_HELLO, 3),
        text("server", {"type": "hello", "transport": "websocket"}, 40),
    )
    d = diag(make_handshake(req, switching(extra=ext), frames=frames))
    assert d.cause is None
    assert names(d, "error") == []
