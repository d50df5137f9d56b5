"""Who made a network card: MAC prefix → vendor, from Wireshark's maintained `manuf` database.

Sources, first found wins: `$WSDIAG_MANUF` (a path), the system's Wireshark file
(`/usr/share/wireshark/manuf`, installed with tshark by Debian's libwireshark-data), then the copy
of the same file that scapy ships (`scapy.libs.manuf`). Both are generated from the IEEE registry
(MA-L, MA-M /28 and MA-S /36 blocks), so nothing here is a hand-typed list: an Espressif chip is
one whose prefix the registry assigns to "Espressif Inc.".

The database is parsed once, on first use (~50,000 lines, well under a second).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from functools import lru_cache

SYSTEM_MANUF_PATHS = (
    "/usr/share/wireshark/manuf",
    "/usr/local/share/wireshark/manuf",
    "/opt/wireshark/share/wireshark/manuf",
)
ESPRESSIF = "espressif"
_HEX = re.compile(r"[0-9a-fA-F]")


class OuiDatabase:
    """Prefix tables keyed by prefix length in bits (24, 28, 36, …), longest match wins."""

    def __init__(self, lines: Iterable[str], source: str) -> None:
        self.source = source
        self.tables: dict[int, dict[int, str]] = {}
        for line in lines:
            self._add(line)
        self.lengths = sorted(self.tables, reverse=True)

    def _add(self, line: str) -> None:
        if not line or line[0] == "#" or not _HEX.match(line):
            return
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 2:
            parts = line.split(None, 2)
            if len(parts) < 2:
                return
        prefix, _, bits_text = parts[0].strip().partition("/")
        digits = prefix.replace(":", "").replace("-", "").replace(".", "")
        try:
            value = int(digits, 16)
        except ValueError:
            return
        bits = int(bits_text) if bits_text.isdigit() else len(digits) * 4
        if not 8 <= bits <= 48 or len(digits) * 4 < bits:
            return
        value >>= len(digits) * 4 - bits
        name = (parts[2] if len(parts) > 2 and parts[2].strip() else parts[1]).strip()
        self.tables.setdefault(bits, {})[value] = name

    def lookup(self, mac: str) -> str | None:
        value = mac_int(mac)
        if value is None:
            return None
        for bits in self.lengths:
            name = self.tables[bits].get(value >> (48 - bits))
            if name is not None:
                return name
        return None


def mac_int(mac: str) -> int | None:
    """A MAC in any usual spelling (aa:bb:…, AA-BB-…, aabb.ccdd.eeff, aabbccddeeff) as an int."""
    digits = mac.strip().replace(":", "").replace("-", "").replace(".", "")
    if len(digits) != 12:
        return None
    try:
        return int(digits, 16)
    except ValueError:
        return None


def _system_file() -> str | None:
    env = os.environ.get("WSDIAG_MANUF")
    for path in ((env,) if env else ()) + SYSTEM_MANUF_PATHS:
        if os.path.isfile(path):
            return path
    return None


@lru_cache(maxsize=1)
def database() -> OuiDatabase:
    path = _system_file()
    if path is not None:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return OuiDatabase(f, path)
        except OSError:
            pass
    try:
        from scapy.libs.manuf import DATA
    except ImportError:  # pragma: no cover - scapy is a dependency
        return OuiDatabase((), "none")
    return OuiDatabase(DATA.splitlines(), "scapy.libs.manuf")


def vendor(mac: str | None) -> str | None:
    """The registered vendor of `mac` (e.g. "Espressif Inc."), or None when unknown."""
    if not mac:
        return None
    return database().lookup(mac)


def is_espressif(mac: str | None) -> bool:
    """True when `mac` lies in a block the IEEE registry assigns to Espressif (ESP8266/ESP32)."""
    name = vendor(mac)
    return name is not None and ESPRESSIF in name.lower()


def espressif_prefixes() -> list[str]:
    """Every Espressif block in the database, as `aa:bb:cc` (or `aa:bb:cc:d/28`…), for tests and docs."""
    db = database()
    out: list[str] = []
    for bits in sorted(db.tables):
        for value, name in db.tables[bits].items():
            if ESPRESSIF in name.lower():
                full = f"{value << (48 - bits):012x}"
                text = ":".join(full[i : i + 2] for i in range(0, 12, 2))[: (bits // 8) * 3 - 1]
                out.append(text if bits == 24 else f"{full[: (bits + 3) // 4]}/{bits}")
    return sorted(out)
