"""Key logs (NSS `SSLKEYLOGFILE` format, and the copy pcapng can embed) checked, never shown.

tshark silently decrypts nothing when a key log does not belong to the capture, so wsdiag says
which TLS sessions have keys: a line's second field is the ClientHello random (public, it is in
the capture), which we match against the randoms our TLS reader saw. Secrets (the third field)
are never kept: only the randoms are read, and nothing from this file is ever printed.
"""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

from analyzer.errors import UsageError

LABELS = frozenset(
    {
        "CLIENT_RANDOM",  # TLS 1.2 master secret
        "RSA",  # pre-master secret by encrypted pre-master (no random): counted, not matched
        "CLIENT_EARLY_TRAFFIC_SECRET",
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EARLY_EXPORTER_SECRET",
        "EXPORTER_SECRET",
    }
)
_HEX = re.compile(r"^[0-9a-fA-F]+$")
MAX_KEYLOG_BYTES = 64 * 1024 * 1024
DSB_BLOCK = 0x0000000A
TLS_KEY_LOG = 0x544C534B  # "TLSK": the DSB secrets type of a TLS key log


def randoms(text: str) -> set[str]:
    """The client randoms (lower-case hex) a key log has secrets for."""
    out: set[str] = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] in LABELS and parts[0] != "RSA" and _HEX.match(parts[1]):
            out.add(parts[1].lower())
    return out


def read_keylog(path: str) -> set[str]:
    """Checks that `path` is a key log and returns its client randoms. Errors name no secret.

    A file with only comments is a key log of sessions that failed before any secret existed
    (Python and OpenSSL write the header line first): no randoms, not an error."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_KEYLOG_BYTES:
            raise UsageError(f"{path}: too big for a key log (over {MAX_KEYLOG_BYTES >> 20} MiB)")
        text = p.read_text("utf-8", "replace")
    except OSError as e:
        raise UsageError(f"{path}: cannot read the key log ({e.strerror})") from None
    found = randoms(text)
    written = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    if not written:
        return found  # only the header a TLS library writes before any secret: no session had keys
    if not found and not any(line.split()[:1] == ["RSA"] for line in written):
        raise UsageError(
            f"{path}: no NSS key log lines (CLIENT_RANDOM …, CLIENT_TRAFFIC_SECRET_0 …); "
            "write one with SSLKEYLOGFILE=/path/keys.log or ssl.SSLContext.keylog_filename"
        )
    return found


PACKET_BLOCKS = frozenset({2, 3, 6})  # obsolete packet, simple packet, enhanced packet
MAX_BLOCKS_SCANNED = 10_000


def _dsb_texts(capture: str) -> list[bytes]:
    """The TLS key logs of the Decryption Secrets Blocks before the first packet of a pcapng.

    Wireshark (`editcap --inject-secrets`) writes them there, since a secret must come before
    the packets it decrypts; stopping at the first packet keeps this cheap on big captures.
    """
    if capture == "-" or not capture.lower().endswith((".pcapng", ".pcapng.gz", ".ntar", ".ntar.gz")):
        return []
    out: list[bytes] = []
    try:
        opener = gzip.open if capture.endswith(".gz") else open
        with opener(capture, "rb") as f:
            head = f.read(12)
            if head[:4] != b"\x0a\x0d\x0d\x0a" or len(head) < 12:
                return []
            endian = "<" if head[8:12] == b"\x4d\x3c\x2b\x1a" else ">"
            blen = struct.unpack(endian + "I", head[4:8])[0]
            f.seek(blen)
            for _ in range(MAX_BLOCKS_SCANNED):
                hdr = f.read(8)
                if len(hdr) < 8:
                    break
                btype, blen = struct.unpack(endian + "II", hdr)
                if btype in PACKET_BLOCKS or blen < 12 or blen % 4 or blen > 64 * 1024 * 1024:
                    break
                body = f.read(blen - 8)
                if btype == DSB_BLOCK and len(body) >= 8:
                    stype, slen = struct.unpack_from(endian + "II", body, 0)
                    if stype == TLS_KEY_LOG:
                        out.append(body[8 : 8 + slen])
    except (OSError, EOFError, struct.error, ValueError):
        return out
    return out


def embedded_randoms(capture: str) -> set[str]:
    """Client randoms of the TLS key logs a pcapng carries in Decryption Secrets Blocks."""
    out: set[str] = set()
    for text in _dsb_texts(capture):
        out |= randoms(text.decode("utf-8", "replace"))
    return out


def has_embedded_keys(capture: str) -> bool:
    return bool(_dsb_texts(capture))
