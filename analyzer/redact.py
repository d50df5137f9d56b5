"""Secrets never leave wsdiag unless asked: one redactor that every output passes through.

Two nets, so that a secret quoted anywhere (a header, a URL, an OTA answer, a frame, a finding's
evidence, a reproduce command) is caught:
1. literals: the values of secret-bearing fields collected from the traffic itself
   (Authorization, Cookie, token-like query parameters, bearer subprotocols, OTA tokens);
2. shapes: anything that looks like a JWT, a xiaozhi HMAC token or a bearer credential.
A xiaozhi token keeps its `.timestamp` tail visible: its age is a diagnosis, not a secret.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote_plus

from analyzer.model import Header, HttpRequest, HttpResponse, OtaExchange

SECRET_HEADERS = {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"}
SECRET_PARAMS = re.compile(
    r"^(authorization|token|access_token|accesstoken|auth|auth_token|api_key|apikey|key|secret|"
    r"password|passwd|pwd|sig|signature|jwt|session|sessionid|code)$",
    re.IGNORECASE,
)
_JWT = r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"
_XIAOZHI = r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?=\.[0-9]{9,11}(?![0-9]))"
# (not the auth-params of a challenge: `WWW-Authenticate: Bearer realm="ws"` names no secret)
# (nor an English word standing alone there: a server's `missing bearer token`)
_BEARER = (
    r"(?i:(?<=bearer )|(?<=basic )|(?<=bearer\+)|(?<=bearer%20))"
    r"(?!(?i:realm|scope|error)=|(?i:token|tokens|auth|required|missing|invalid|expired)(?![A-Za-z0-9._~+/=%-]))"
    r"[A-Za-z0-9._~+/=%-]{4,}"
)
SHAPES = re.compile("|".join((_JWT, _XIAOZHI, _BEARER)))
MIN_LITERAL = 4
_MARKER = re.compile(
    r"^(bearer|token|access_token|accesstoken|auth|auth_token|authorization|jwt)$", re.IGNORECASE
)


def mask(secret: str) -> str:
    return f"‹redacted:{len(secret)}›"


def _split_credential(value: str) -> str:
    """The credential part of an Authorization-style value (after the scheme word, if any)."""
    scheme, sep, rest = value.strip().partition(" ")
    return rest.strip() if sep and scheme.isalpha() and len(scheme) < 20 else value.strip()


def _credential_secret(cred: str) -> str:
    """A xiaozhi token's signature is the secret; its `.timestamp` tail stays readable."""
    sig, dot, ts = cred.rpartition(".")
    return sig if dot and ts.isdigit() and 9 <= len(ts) <= 11 and len(sig) >= MIN_LITERAL else cred


def header_secrets(headers: Iterable[Header]) -> list[str]:
    found: list[str] = []
    for name, value in headers:
        lname = name.lower()
        if lname in SECRET_HEADERS:
            if lname in ("cookie", "set-cookie"):
                found += [v.strip() for part in value.split(";") for _, _, v in [part.partition("=")]]
            else:
                found.append(_credential_secret(_split_credential(value)))
        elif lname == "sec-websocket-protocol":
            items = [p.strip() for p in value.split(",")]
            # a bare marker ("Bearer", "access_token") is not a secret, the item after it is:
            # browsers send `new WebSocket(url, ["Bearer", token])` as `Bearer, <token>`
            found += [p for p in items if re.search(r"bearer|token|auth", p, re.I) and not _MARKER.match(p)]
            found += [items[i + 1] for i, p in enumerate(items[:-1]) if _MARKER.match(p)]
    return found


def query_secrets(target: str) -> list[str]:
    _, _, query = target.partition("?")
    found: list[str] = []
    for raw in query.split("&"):
        name, sep, value = raw.partition("=")
        if sep and SECRET_PARAMS.match(unquote_plus(name)):
            decoded = unquote_plus(value)
            found.append(_credential_secret(_split_credential(decoded)))
            raw_cred = (
                re.split(r"\+|%20", value, maxsplit=1)[-1] if decoded != _split_credential(decoded) else value
            )
            found.append(_credential_secret(raw_cred))  # as written on the wire (percent-encoded)
    for _, value in parse_qsl(query, keep_blank_values=False):
        if SHAPES.search(value):
            found.append(_credential_secret(_split_credential(value)))
    return found


def body_secrets(body: bytes) -> list[str]:
    """Tokens handed out in JSON answers (the xiaozhi OTA's `websocket.token`, `mqtt.password`…)."""
    if not body or body[:1] not in (b"{", b"["):
        return []
    try:
        doc = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        return []
    found: list[str] = []

    def walk(node: object, depth: int = 0) -> None:
        if depth > 8:
            return
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, str) and SECRET_PARAMS.match(str(k)):
                    found.append(v)
                else:
                    walk(v, depth + 1)
        elif isinstance(node, list):
            for v in node[:100]:
                walk(v, depth + 1)

    walk(doc)
    return found


def _may_hold_shape(text: str) -> bool:
    """False when `SHAPES` cannot match: ASCII text with no `eyJ` (a JWT), no `bearer`/`basic`
    in any case (a credential after its scheme) and too short or dot-less for a xiaozhi token.
    Most strings of a report are such, and the regex costs more than these searches."""
    if not text.isascii():
        return True  # case-insensitive matching knows non-ASCII look-alikes (U+017F for s)
    if "eyJ" in text or (len(text) >= 53 and "." in text):
        return True
    low = text.lower()
    return "bearer" in low or "basic" in low


def _mask_ascii(text: str, lowered: tuple[str, ...]) -> str:
    """What `re.sub` of the case-insensitive alternation of `lowered` (longest first) would
    give on ASCII `text`: the leftmost match wins, the longest of those starting there."""
    low = text.lower()
    out: list[str] = []
    pos = 0
    ahead = [low.find(lit) for lit in lowered]  # next occurrence of each at or after `pos`
    while True:
        best, size = -1, 0
        for i, lit in enumerate(lowered):
            at = ahead[i]
            if at != -1 and at < pos:  # overlapped by the last mask: look again (once per mask)
                at = ahead[i] = low.find(lit, pos)
            if at != -1 and (best == -1 or at < best):
                best, size = at, len(lit)
        if best == -1:
            break
        out += (text[pos:best], mask(text[best : best + size]))
        pos = best + size
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


class Redactor:
    """Built from the traffic of one report; `apply` masks every known secret in any string."""

    def __init__(self, literals: Iterable[str] = (), enabled: bool = True) -> None:
        self.enabled = enabled
        lits = sorted({s for s in literals if len(s) >= MIN_LITERAL}, key=len, reverse=True)
        # case-insensitive: rules quote some values lower-cased (a subprotocol list, a Device-Id)
        self._pattern = "|".join(re.escape(s) for s in lits)
        self._literals: re.Pattern[str] | None = None  # compiled on first non-ASCII need
        # ASCII text against ASCII secrets (nearly always) is masked by plain searches: a report
        # builds a Redactor per handshake, and compiling each one's alternation cost more than
        # all the masking (0.2 s of 0.5 s for 400 handshakes)
        ascii_only = all(s.isascii() for s in lits)
        self._ascii = tuple(dict.fromkeys(s.lower() for s in lits)) if ascii_only else None

    @classmethod
    def for_traffic(
        cls,
        messages: Iterable[HttpRequest | HttpResponse | None],
        otas: Iterable[OtaExchange] = (),
        enabled: bool = True,
        payloads: Iterable[bytes] = (),
    ) -> Redactor:
        """`payloads`: WebSocket message payloads; tokens under secret-named JSON keys in them
        (a `hello` carrying `"token": …`) are collected like the OTA answer's."""
        literals: list[str] = []
        if enabled:
            for payload in payloads:
                literals += body_secrets(payload)
            for msg in messages:
                if msg is None:
                    continue
                literals += header_secrets(msg.headers)
                if isinstance(msg, HttpRequest):
                    literals += query_secrets(msg.target)
                literals += body_secrets(msg.body)
            for ota in otas:
                literals += header_secrets(ota.request.headers)
                if ota.response is not None:
                    literals += body_secrets(ota.response.body)
        return cls(literals, enabled)

    def apply(self, text: str) -> str:
        if not self.enabled or not text:
            return text
        if self._pattern:
            if self._ascii is not None and text.isascii():
                text = _mask_ascii(text, self._ascii)
            else:
                if self._literals is None:
                    self._literals = re.compile(self._pattern, re.IGNORECASE)
                text = self._literals.sub(lambda m: mask(m.group(0)), text)
        if not _may_hold_shape(text):
            return text
        return SHAPES.sub(lambda m: mask(m.group(0)), text)

    def tree(self, node: object) -> object:
        """Redacts every string inside a JSON-like tree (dict keys are field names, kept)."""
        if isinstance(node, str):
            return self.apply(node)
        if isinstance(node, dict):
            return {k: self.tree(v) for k, v in node.items()}
        if isinstance(node, list | tuple):
            return [self.tree(v) for v in node]
        return node
