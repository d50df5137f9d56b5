"""Just enough TLS record reading to tell what a connection spoke: ClientHello, ServerHello, alerts.

wsdiag does not decrypt here (that is tshark's job with a key log); it only needs to know that a
client spoke TLS to a plain port, that a server answered plain HTTP with TLS, or that an alert ended
the handshake. Every length is checked against the bytes at hand.
"""

from __future__ import annotations

from dataclasses import dataclass

ALERTS = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    49: "access_denied",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    113: "bad_certificate_status_response",
    116: "certificate_required",
    120: "no_application_protocol",
}


def is_tls_record(data: bytes) -> bool:
    """A TLS record header: content type 20-23, version 3.x (SSL 3.0 .. TLS 1.3 on the wire)."""
    return len(data) >= 3 and 20 <= data[0] <= 23 and data[1] == 3 and data[2] <= 4


@dataclass(frozen=True, slots=True)
class TlsFacts:
    client_hello: bool = False
    server_hello: bool = False
    alert: tuple[int, int] | None = None
    sni: str | None = None


def read_records(data: bytes, limit: int = 16) -> TlsFacts:
    """Reads the first few plaintext records of one direction (bounded by `limit` records)."""
    client_hello = server_hello = False
    alert: tuple[int, int] | None = None
    sni: str | None = None
    pos = 0
    for _ in range(limit):
        if len(data) - pos < 5 or not is_tls_record(data[pos:]):
            break
        ctype = data[pos]
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        body = data[pos + 5 : pos + 5 + length]
        if ctype == 22 and body:
            if body[0] == 1:
                client_hello = True
                sni = sni or _sni(body)
            elif body[0] == 2:
                server_hello = True
        elif ctype == 21 and length == 2 and len(body) == 2 and alert is None:
            alert = (body[0], body[1])
        pos += 5 + length
    return TlsFacts(client_hello, server_hello, alert, sni)


def _sni(hello: bytes) -> str | None:
    """The server_name extension of a ClientHello handshake message, if it is all in `hello`."""
    try:
        p = 4 + 2 + 32  # handshake header, client_version, random
        p += 1 + hello[p]  # session id
        p += 2 + int.from_bytes(hello[p : p + 2], "big")  # cipher suites
        p += 1 + hello[p]  # compression methods
        end = p + 2 + int.from_bytes(hello[p : p + 2], "big")
        p += 2
        while p + 4 <= min(end, len(hello)):
            etype = int.from_bytes(hello[p : p + 2], "big")
            elen = int.from_bytes(hello[p + 2 : p + 4], "big")
            if etype == 0:
                ext = hello[p + 4 : p + 4 + elen]
                nlen = int.from_bytes(ext[3:5], "big")
                return ext[5 : 5 + nlen].decode("ascii", "replace") if ext[2:3] == b"\x00" else None
            p += 4 + elen
    except IndexError:
        return None
    return None


def alert_name(desc: int) -> str:
    return ALERTS.get(desc, f"alert {desc}")
