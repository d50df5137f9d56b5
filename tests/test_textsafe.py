"""textsafe: nothing that can control a terminal or hide text survives, and nothing is lost."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from analyzer.textsafe import for_rich, safe, safe_bytes

BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C]
HIDING = [0x200B, 0x200C, 0x200D, 0xFEFF, 0x2028, 0x2029]
FORBIDDEN = {*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0), *BIDI, *HIDING}

_ESC = re.compile(r"\\(\\|t|n|r|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")


def unescape(s: str) -> str:
    """The inverse of safe() (without a limit): proves the output has exactly one reading."""

    def one(m: re.Match[str]) -> str:
        g = m.group(1)
        return {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}.get(g) or chr(int(g[1:], 16))

    return _ESC.sub(one, s)


def assert_clean(out: str) -> None:
    bad = [hex(ord(c)) for c in out if ord(c) in FORBIDDEN or 0xD800 <= ord(c) <= 0xDFFF]
    assert not bad, bad


def test_every_latin1_byte_is_made_visible() -> None:
    text = bytes(range(256)).decode("latin-1")
    out = safe(text)
    assert_clean(out)
    assert unescape(out) == text
    assert "\\x1b" in out and "\\x7f" in out and "\\x85" in out and "\\xa0" in out
    assert "\\t" in out and "\\n" in out and "\\r" in out


@pytest.mark.parametrize("cp", sorted({*range(0x80, 0xA0), *BIDI, *HIDING}))
def test_c1_bidi_and_hiding_code_points_are_escaped(cp: int) -> None:
    out = safe(f"a{chr(cp)}b")
    assert_clean(out)
    assert out == f"a\\u{cp:04x}b" if cp >= 0x100 else out == f"a\\x{cp:02x}b"


def test_lone_surrogates_and_astral_format_chars() -> None:
    assert safe("\ud800x") == "\\ud800x"
    assert safe("\U000e0041") == "\\U000e0041"  # a tag character ("ASCII smuggling")
    assert safe("😀") == "😀"


def test_chinese_and_plain_text_unchanged() -> None:
    for text in ("认证失败", "端口正常", "Bearer abc.123", "permessage-deflate; client_max_window_bits"):
        assert safe(text) == text


def test_backslash_is_doubled_so_a_literal_escape_cannot_pass_for_a_real_one() -> None:
    assert safe("\\x1b") == "\\\\x1b"
    assert safe("\x1b") == "\\x1b"
    assert safe("\\x1b") != safe("\x1b")


def test_terminal_attack_strings() -> None:
    out = safe("\x1b]0;pwned\x07\x1b[2J\u202eevil")
    assert out == "\\x1b]0;pwned\\x07\\x1b[2J\\u202eevil"


@given(st.text())
def test_round_trip_and_clean(text: str) -> None:
    out = safe(text)
    assert_clean(out)
    assert unescape(out) == text


def test_limit_cuts_output_without_splitting_escapes() -> None:
    assert safe("abcdef", 3) == "abc…(3 more)"
    assert safe("abc", 3) == "abc"
    assert safe("ab\x1bcd", 4) == "ab…(3 more)"  # "\x1b" (4 chars) does not fit after "ab"
    assert safe("认证失败", 2) == "认证…(2 more)"
    assert safe("x" * 10_000_000, 5) == "xxxxx…(9999995 more)"


def test_safe_bytes() -> None:
    assert safe_bytes("认证失败".encode()) == "认证失败"
    # Not UTF-8, so latin-1: the 8-bit CSI (0x9b) is escaped, a printable ÿ is kept.
    assert safe_bytes(b"\x1b[31mred\x9b2J\xff") == "\\x1b[31mred\\x9b2J\xff"
    assert safe_bytes(b"\xc2\x85") == "\\x85"  # valid UTF-8 for U+0085 (NEL)
    assert safe_bytes(b"abcdef", 2) == "ab…(4 more)"


@pytest.mark.parametrize(
    "text", ["[bold red]x[/]", "[link=file:///etc/passwd]click[/link]", "\\[bold]x", "a\\", "[/]"]
)
def test_for_rich_renders_markup_literally(text: str) -> None:
    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, force_terminal=False, color_system=None, width=200).print(for_rich(text))
    assert buf.getvalue() == safe(text) + "\n"
