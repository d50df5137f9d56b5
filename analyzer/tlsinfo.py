"""TLS at a glance: is this a TLS record, and what is an alert called.

Telling the protocol of a direction from its first bytes needs only the record header; the
handshake itself (hellos, certificates, alerts) is read incrementally by `analyzer.tls.records`.
"""

from __future__ import annotations

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


def alert_name(desc: int) -> str:
    return ALERTS.get(desc, f"alert {desc}")
