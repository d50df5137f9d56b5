"""The one gate every captured string passes before it reaches a terminal or a rich console.

Why: captured header values, frame payloads and close reasons are attacker-controlled. Printed
raw, an `ESC ] 0 ;` sequence retitles the terminal, `ESC [ 2 J` wipes it, a bidi override
reorders what the user reads ("Trojan Source", CVE-2021-42574), a zero-width space or NBSP makes
`Bearer\\u200btoken` look like `Bearer token` (CWE-150; reliability.md §3.3).

What is escaped: every character `str.isprintable()` rejects — C0 controls, DEL, C1 controls,
format characters (bidi controls, zero-width characters, BOM, tag characters), line and paragraph
separators, lone surrogates, private-use and unassigned code points, and every space other than
U+0020 (an NBSP that looks like a space is exactly what a diagnosis must show). Escapes use
Python literal syntax: `\\t` `\\n` `\\r`, `\\xNN` below U+0100, `\\uNNNN`, `\\UNNNNNNNN`. The
backslash itself becomes `\\\\`, so every output has exactly one reading (the mapping is
invertible) and a captured literal `\\x1b` cannot pass for an escaped ESC. Printable Unicode such
as 认证失败 is kept as is.
"""

from __future__ import annotations

import re

_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r", "\\": "\\\\"}


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    if ch.isprintable():
        return ch
    cp = ord(ch)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def safe(text: str, limit: int | None = None) -> str:
    """`text` with every invisible or terminal-controlling character made visible, on one line.

    `limit` bounds the *output* to that many characters (escapes are never cut in half), then
    `…(N more)` says how many input characters were left out. Work stops at the limit, so a
    huge captured value costs no more than the part shown.
    """
    if limit is None and "\\" not in text and text.isprintable():
        return text  # fast path: the common case is plain ASCII or printable Unicode
    out: list[str] = []
    used = 0
    for i, ch in enumerate(text):
        piece = _escape(ch)
        if limit is not None and used + len(piece) > limit:
            return "".join(out) + f"…({len(text) - i} more)"
        out.append(piece)
        used += len(piece)
    return "".join(out)


def safe_bytes(data: bytes, limit: int | None = None) -> str:
    """A payload preview: UTF-8 when the bytes are valid UTF-8, else latin-1 (one char per byte,
    so a binary payload shows as `\\xNN` escapes), then `safe()`."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return safe(text, limit)


def for_rich(text: str, limit: int | None = None) -> str:
    """`safe()` plus rich markup escaping, for strings interpolated into rich markup.

    Without it a captured `[link=file:///etc/passwd]` or `[bold red]` would be interpreted by
    rich. rich is imported here so the rest of the analyzer (and its tests) never needs it.
    """
    from rich.markup import escape

    return escape(safe(text, limit))


def _json_escape(ch: str) -> str:
    cp = ord(ch)
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    cp -= 0x10000
    return f"\\u{0xD800 | (cp >> 10):04x}\\u{0xDC00 | (cp & 0x3FF):04x}"


_NON_ASCII = re.compile(r"[^\x00-\x7e]")


def json_text(obj: object, indent: int | None = None) -> str:
    """`json.dumps(obj, ensure_ascii=False)` with every non-printable character escaped as
    `\\uXXXX` too: DEL, C1 controls, bidi and other format characters, U+2028/U+2029 (which
    `str.splitlines()` and JavaScript treat as line ends, breaking JSONL). Readable Unicode such
    as 认证失败 stays as is, so the output is valid UTF-8 that is also safe to `cat`."""
    import json

    text = json.dumps(obj, ensure_ascii=False, indent=indent)
    if text.isascii() and "\x7f" not in text:
        return text
    # Outside strings JSON text is printable ASCII and whitespace, so every character matched
    # here sits inside a string, where a \uXXXX escape means the same character.
    return _NON_ASCII.sub(lambda m: m.group() if m.group().isprintable() else _json_escape(m.group()), text)
