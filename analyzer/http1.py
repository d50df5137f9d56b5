"""Tolerant HTTP/1.x head parsing for captured bytes. Never raises on bad input.

Unlike h11 or websockets, which refuse a bad request, this parser keeps everything it can and
names what was odd (`bare-lf`, `obs-fold`, `space-before-colon`, …): the oddities are exactly what
the rules need to explain why a strict server refused the request. Header values are decoded as
latin-1 so decoding never fails and no byte is lost.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from analyzer.model import Header

METHODS = (b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")
_METHOD_RE = re.compile(rb"[A-Za-z]{3,10} ")
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
MAX_LINE = 8192  # websockets' limit: longer lines are refused by the server xiaozhi runs on
_CTL_RE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def looks_like_request(data: bytes) -> bool:
    """True when `data` starts like an HTTP request line (a known method, any case, then a space)."""
    m = _METHOD_RE.match(data[:11])
    return m is not None and m.group(0)[:-1].upper() in METHODS


def looks_like_response(data: bytes) -> bool:
    return data[:5] == b"HTTP/"


def find_head_end(buf: bytes | bytearray, start: int = 0) -> int:
    """Index just past the blank line ending a head (CRLFCRLF, or bare LFs), or -1.

    `start`: where to begin looking, for a caller that knows no head ends before it (a reader
    fed a segment at a time rescans only the new bytes, not the whole buffer each time)."""
    i = buf.find(b"\r\n\r\n", start)
    j = buf.find(b"\n\n", start)
    if i < 0 and j < 0:
        k = buf.find(b"\n\r\n", start)
        return k + 3 if k >= 0 else -1
    if j < 0 or (0 <= i < j):
        return i + 4
    k = buf.find(b"\n\r\n", start)
    if 0 <= k < j:
        return k + 3
    return j + 2


@dataclass(frozen=True, slots=True)
class Head:
    """A parsed start line and header block, with what was odd about them."""

    start: tuple[str, str, str]  # (method, target, version) or (version, status, reason)
    headers: tuple[Header, ...]
    anomalies: tuple[str, ...]


def _split_lines(head: bytes, anomalies: list[str]) -> list[str]:
    text = head.decode("latin-1")
    raw = text.split("\n")
    lines: list[str] = []
    for i, line in enumerate(raw):
        if line.endswith("\r"):
            line = line[:-1]
        elif i < len(raw) - 1 and "bare-lf" not in anomalies:
            anomalies.append("bare-lf")
        if "\r" in line and "bare-cr" not in anomalies:
            anomalies.append("bare-cr")
        lines.append(line)
    while lines and lines[-1] == "":
        lines.pop()
    if any(len(line) + 2 > MAX_LINE for line in lines):  # websockets counts the CRLF in its limit
        _note(anomalies, "line-too-long")
    return lines


def _parse_headers(lines: list[str], max_headers: int, anomalies: list[str]) -> tuple[Header, ...]:
    headers: list[Header] = []
    for line in lines:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip(" \t"))
            _note(anomalies, "obs-fold")
            continue
        name, sep, value = line.partition(":")
        if not sep:
            _note(anomalies, "header-without-colon")
            continue
        if name != name.rstrip(" \t"):
            _note(anomalies, "space-before-colon")
            name = name.rstrip(" \t")
        if not _TOKEN_RE.match(name):
            _note(anomalies, "invalid-header-name")
        value = value.strip(" \t")
        if _CTL_RE.search(value):
            _note(anomalies, "control-char")
            if "\x00" in value:
                _note(anomalies, "header-nul")
        if len(headers) >= max_headers:
            _note(anomalies, "too-many-headers")
            break
        headers.append((name, value))
    return tuple(headers)


def _note(anomalies: list[str], name: str) -> None:
    if name not in anomalies:
        anomalies.append(name)


def parse_request_head(head: bytes, max_headers: int = 1000) -> Head:
    anomalies: list[str] = []
    lines = _split_lines(head, anomalies)
    first = lines[0] if lines else ""
    parts = first.split(" ")
    if len(parts) != 3:
        _note(anomalies, "bad-request-line")
        parts = [*first.split(None, 2), "", "", ""][:3]
    method, target, version = parts
    if method != method.upper():
        _note(anomalies, "lowercase-method")
    if not version.startswith("HTTP/1."):
        _note(anomalies, "bad-http-version")
    return Head(
        (method, target, version), _parse_headers(lines[1:], max_headers, anomalies), tuple(anomalies)
    )


def parse_response_head(head: bytes, max_headers: int = 1000) -> Head:
    anomalies: list[str] = []
    lines = _split_lines(head, anomalies)
    first = lines[0] if lines else ""
    version, _, rest = first.partition(" ")
    status, _, reason = rest.partition(" ")
    if not (len(status) == 3 and _is_ascii_digits(status)):
        _note(anomalies, "bad-status-line")
    return Head(
        (version, status, reason), _parse_headers(lines[1:], max_headers, anomalies), tuple(anomalies)
    )


def status_code(head: Head) -> int:
    s = head.start[1]
    return int(s) if len(s) == 3 and _is_ascii_digits(s) else 0


def _is_ascii_digits(s: str) -> bool:
    """0-9 only: `str.isdigit()` also accepts '²' and '¹' (latin-1 bytes 0xB2, 0xB9), which
    `int()` then refuses (found by fuzzing)."""
    return s.isascii() and s.isdigit()


def content_length(headers: tuple[Header, ...]) -> tuple[int | None, list[str]]:
    """The body length a Content-Length header announces (bounded digit parse), and anomalies."""
    values = [v.strip() for n, v in headers if n.lower() == "content-length"]
    if not values:
        return None, []
    anomalies: list[str] = []
    if len(set(values)) > 1:
        anomalies.append("conflicting-content-length")
    elif len(values) > 1:
        anomalies.append("duplicate-content-length")
    v = values[0]
    if not _is_ascii_digits(v) or len(v) > 18:
        return None, [*anomalies, "bad-content-length"]
    return int(v), anomalies


def is_chunked(headers: tuple[Header, ...]) -> bool:
    return any(n.lower() == "transfer-encoding" and "chunked" in v.lower() for n, v in headers)
