"""Espressif recognition from the maintained OUI database (Wireshark's manuf file or scapy's copy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analyzer import oui


@pytest.mark.parametrize("mac", ["24:0a:c4:12:34:56", "A0-B7-65-00-00-01", "30aea4000001", "a0b7.6512.3456"])
def test_espressif_blocks_in_any_spelling(mac: str) -> None:
    assert oui.is_espressif(mac)
    assert "Espressif" in (oui.vendor(mac) or "")


@pytest.mark.parametrize(
    "mac", ["00:00:00:00:00:00", "02:00:00:00:00:01", "de:ad:be:ef:00:01", "", None, "zz", "24:0a:c4"]
)
def test_not_espressif(mac: str | None) -> None:
    assert not oui.is_espressif(mac)


def test_database_is_the_maintained_one_not_a_short_list() -> None:
    db = oui.database()
    assert db.source.endswith("manuf")
    assert sum(len(t) for t in db.tables.values()) > 30_000  # the whole IEEE registry, not a hand-typed list
    prefixes = oui.espressif_prefixes()
    assert len(prefixes) > 50 and "24:0a:c4" in prefixes


def test_longest_prefix_wins(tmp_path: Path) -> None:
    manuf = tmp_path / "manuf"
    manuf.write_text(
        "# comment\n"
        "00:1B:C5\tIEEE\tIEEE Registration Authority\n"
        "00:1B:C5:00:10:00/36\tOpenRBco\tOpenRB.com, Direct SIA\n"
        "70:B3:D5:F0:00:00/28\tSmall\tSmall Block Ltd\n"
        "garbage line\n"
    )
    db = oui.OuiDatabase(manuf.read_text().splitlines(), str(manuf))
    assert db.lookup("00:1b:c5:00:10:0f") == "OpenRB.com, Direct SIA"
    assert db.lookup("00:1b:c5:00:20:00") == "IEEE Registration Authority"
    assert db.lookup("70:b3:d5:f1:23:45") == "Small Block Ltd"
    assert db.lookup("70:b3:d5:e1:23:45") is None


def test_scapy_copy_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(oui, "SYSTEM_MANUF_PATHS", ())
    monkeypatch.delenv("WSDIAG_MANUF", raising=False)
    oui.database.cache_clear()
    try:
        assert oui.database().source == "scapy.libs.manuf"
        assert oui.is_espressif("24:0a:c4:00:00:01")
    finally:
        oui.database.cache_clear()
