"""The rules and the engine that runs them.

`RULES` is the explicit registry, in code order; codes and names are stable forever.
`diagnose` runs every selected rule on every handshake, orders the findings by
(severity, rank) and names the cause of each failed handshake.

Families: WS0xx transport/TLS, WS1xx the request (RFC 6455/9112), WS2xx the xiaozhi contract,
WS3xx the answer, WS4xx OTA correlation, WS5xx TLS certificates, names and alerts, WS6xx the two
legs of an attempt through a proxy, compared.

A handshake *failed* when it did not get a 101, or when some rule reported an ERROR on it:
rules emit ERROR on an upgraded handshake only when the frames show an in-band rejection
(认证失败, 端口正常…, Close 1011/1007, no hello) or the client could not accept the 101.
So good handshakes carry warnings and information only, and `cause` is None for them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from analyzer.config import Config
from analyzer.model import (
    Diagnosis,
    Endpoint,
    Finding,
    Handshake,
    OtaDiagnosis,
    OtaExchange,
    Outcome,
    Severity,
)
from analyzer.reproduce import command
from analyzer.rules import legs, ota, request, response, tls, transport, xiaozhi
from analyzer.rules._facts import (
    AUTH_FAILED_TEXT,
    NO_IDENTITY_TEXT,
    CaptureIndex,
    HandshakeIndex,
    hs_time,
    is_websocket_attempt,
    is_xiaozhi_request,
)
from analyzer.rules._rule import Context, Hit, Rule, rule, sort_key

RULES: tuple[Rule, ...] = (
    transport.RULES + request.RULES + xiaozhi.RULES + response.RULES + ota.RULES + tls.RULES + legs.RULES
)
CAUSE_NAMES: tuple[str, ...] = tuple(r.name for r in RULES)

__all__ = [
    "CAUSE_NAMES",
    "RULES",
    "Context",
    "Hit",
    "OtaDiagnosis",
    "Rule",
    "diagnose",
    "diagnose_otas",
    "find_rule",
    "rule",
    "selected_rules",
]


def find_rule(code_or_name: str) -> Rule | None:
    key = code_or_name.strip()
    for r in RULES:
        if r.code == key.upper() or r.name == key.lower():
            return r
    return None


def selected_rules(config: Config) -> tuple[Rule, ...]:
    """flake8's DecisionEngine, simplified: select (empty = all), then ignore."""
    chosen = [r for r in RULES if not config.select or any(r.matches(s) for s in config.select)]
    return tuple(r for r in chosen if not any(r.matches(s) for s in config.ignore))


def _speaks_xiaozhi(hs: Handshake) -> bool:
    if hs.request is not None and is_xiaozhi_request(hs.request):
        return True
    if hs.response is not None and hs.response.body.startswith(b"Server is running"):
        return True
    texts = (f.text or "" for f in hs.frames if f.direction == "server")
    return any(t.startswith((AUTH_FAILED_TEXT, NO_IDENTITY_TEXT)) for t in texts)


def _xiaozhi_profile(
    hs: Handshake, xiaozhi_servers: set[Endpoint], otas: Sequence[OtaExchange], config: Config
) -> bool:
    """`auto`: this handshake, another one to the same server endpoint, or an OTA exchange looks xiaozhi."""
    if config.profile != "auto":
        return config.profile == "xiaozhi"
    return bool(otas) or hs.server in xiaozhi_servers or _speaks_xiaozhi(hs)


def _reference_ns(hs: Handshake, now_ns: int | None) -> int:
    """Token ages are judged at the handshake's capture time; `now_ns` (or the clock) if unknown."""
    return hs_time(hs) or now_ns or time.time_ns()


def _findings(hs: Handshake, ctx: Context, rules: Sequence[Rule]) -> list[Finding]:
    found: list[Finding] = []
    for r in rules:
        if r.xiaozhi_only and not ctx.xiaozhi:
            continue
        found.extend(r.finding(hit) for hit in r(hs, ctx))
    fallback = {r.code for r in RULES if r.code in response.FALLBACK_CODES}
    if any(f.severity == Severity.ERROR and f.code not in fallback for f in found):
        found = [f for f in found if f.code not in fallback]
    return sorted(found, key=sort_key)


TUNNEL_RULES = frozenset({"WS001", "WS002", "WS003", "WS304"})  # what can go wrong with a CONNECT


def diagnose_one(hs: Handshake, ctx: Context, rules: Sequence[Rule]) -> Diagnosis:
    if hs.request is not None and hs.request.method.upper() == "CONNECT":
        rules = [r for r in rules if r.code in TUNNEL_RULES]  # the proxy refused to open a tunnel
    elif hs.request is not None and not is_websocket_attempt(hs.request):
        return Diagnosis(hs, (), None, command(hs))  # h2c, plain HTTP: not ours to judge
    findings = tuple(_findings(hs, ctx, rules))
    errors = [f for f in findings if f.severity == Severity.ERROR]
    failed = hs.outcome != Outcome.UPGRADED or bool(errors)
    cause = errors[0] if failed and errors else None
    return Diagnosis(hs, findings, cause, command(hs))


def diagnose(
    handshakes: Sequence[Handshake],
    otas: Sequence[OtaExchange],
    config: Config,
    now_ns: int | None = None,
    context: Sequence[Handshake] = (),
) -> list[Diagnosis]:
    """One Diagnosis per handshake, in input order.

    `context` are other connections the rules may compare with but that are not diagnosed
    again: live mode diagnoses one connection at a time, and passes the ones it reported
    recently, so that the checks across connections (the two legs of a proxy, the proxy's failed
    upstream connection, TLS spoken on the same server, the same idle timeout) see what a
    capture file would show them.
    """
    rules = selected_rules(config)
    every = [*context, *handshakes] if context else handshakes
    xiaozhi_servers = {hs.server for hs in every if _speaks_xiaozhi(hs)}
    index = CaptureIndex(every, otas)
    out = []
    for hs in handshakes:
        xiaozhi = _xiaozhi_profile(hs, xiaozhi_servers, otas, config)
        ctx = Context(config, every, otas, xiaozhi, _reference_ns(hs, now_ns), index)
        out.append(diagnose_one(hs, ctx, rules))
    return out


def diagnose_otas(
    otas: Sequence[OtaExchange], handshakes: Sequence[Handshake], config: Config
) -> list[OtaDiagnosis]:
    """One OtaDiagnosis per OTA exchange, in input order (empty findings for a good one)."""
    codes = {r.code for r in selected_rules(config)}
    index = HandshakeIndex(handshakes)
    out = []
    for exchange in otas:
        findings = tuple(f for f in ota.ota_findings(exchange, index) if f.code in codes)
        errors = [f for f in findings if f.severity == Severity.ERROR]
        out.append(OtaDiagnosis(exchange, findings, errors[0] if errors else None))
    return out
