"""Certificate facts from the DER bytes a server sent, through `cryptography` (never by hand).

What matters for an ESP32 is not whether a browser would accept the chain but the concrete ways
devices fail: a chain without its intermediate (the device bundle holds roots only), a validity
window the capture time (or a device clock stuck in 1970) falls outside, an ECDSA key a 4G
modem's TLS stack cannot use, a name that does not cover the host the device asked for.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import itertools
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime

from analyzer.model import CertInfo


def parse_chain(ders: Sequence[bytes]) -> tuple[CertInfo, ...]:
    """Each DER that parses, in the order the server sent them (leaf first)."""
    out = []
    for der in ders:
        info = parse_der(der)
        if info is not None:
            out.append(info)
    return tuple(out)


def _ns(dt: datetime) -> int:
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1_000_000_000


def parse_der(der: bytes) -> CertInfo | None:
    """The facts of one certificate the server sent, or None when its names and dates cannot
    be read. The bytes come from the capture: `cryptography` parses fields lazily and raises
    what it likes on a damaged one (ValueError, KeyError, UnsupportedAlgorithm…), so every step
    here treats any exception as "this field is unreadable"."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa

    try:
        with warnings.catch_warnings():  # "serial number not positive…": the capture's problem, not ours
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
        subject, issuer = cert.subject.rfc4514_string(), cert.issuer.rfc4514_string()
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        self_signed = cert.subject == cert.issuer
    except Exception:  # hostile bytes; see the docstring
        return None
    key_type, bits, curve = "unknown", 0, None
    try:
        key = cert.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            key_type, bits = "RSA", key.key_size
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key_type, bits, curve = "EC", key.curve.key_size, key.curve.name
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key_type, bits = "Ed25519", 256
        elif isinstance(key, ed448.Ed448PublicKey):
            key_type, bits = "Ed448", 456
        elif isinstance(key, dsa.DSAPublicKey):
            key_type, bits = "DSA", key.key_size
    except Exception:  # an unsupported or damaged key: keep the names and dates
        pass
    names: list[str] = []
    is_ca = False
    with contextlib.suppress(Exception):  # missing or damaged extensions: no names
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [*san.get_values_for_type(x509.DNSName), *map(str, san.get_values_for_type(x509.IPAddress))]
    with contextlib.suppress(Exception):
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    return CertInfo(
        subject=subject,
        issuer=issuer,
        not_before_ns=_ns(not_before),
        not_after_ns=_ns(not_after),
        key_type=key_type,
        key_bits=bits,
        curve=curve,
        self_signed=self_signed,
        is_ca=is_ca,
        names=tuple(names[:50]),
        sha256=hashlib.sha256(der).hexdigest(),
    )


def validity(cert: CertInfo, at_ns: int) -> str:
    """ "valid", "expired" or "not-yet-valid" at capture time `at_ns`."""
    if at_ns < cert.not_before_ns:
        return "not-yet-valid"
    if at_ns > cert.not_after_ns:
        return "expired"
    return "valid"


def chain_status(chain: Sequence[CertInfo]) -> str:
    """How far the sent chain goes: "complete" (ends in a self-signed root the server sent),
    "ends-at-intermediate" (the last issuer not sent: normal, the client must hold
    that root), "leaf-only" (no issuer sent: fine only when the leaf's issuer is itself a root
    the device holds; public CAs always issue from intermediates), "self-signed-leaf",
    "out-of-order", or "empty"."""
    if not chain:
        return "empty"
    leaf = chain[0]
    if leaf.self_signed:
        return "self-signed-leaf"
    for child, parent in itertools.pairwise(chain):
        if child.issuer != parent.subject:
            return "out-of-order"
    last = chain[-1]
    if last.self_signed:
        return "complete"
    if len(chain) == 1:
        return "leaf-only"
    return "ends-at-intermediate"


def covers(cert: CertInfo, host: str) -> bool:
    """Does the certificate name `host` (subjectAltName, RFC 6125 single-label wildcards)?"""
    host = host.rstrip(".").lower()
    try:
        ip = str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        ip = None
    names = [n.lower() for n in cert.names]
    if not names:  # legacy: CN only
        names = [p[3:].lower() for p in cert.subject.split(",") if p.startswith("CN=")]
    for name in names:
        if ip is not None:
            if name == ip:
                return True
            continue
        if name == host:
            return True
        if name.startswith("*.") and "." in host and host.split(".", 1)[1] == name[2:]:
            return True
    return False


def describe(cert: CertInfo) -> str:
    """One line for people: subject, key and validity."""
    key = f"{cert.key_type} {cert.key_bits}" + (f" ({cert.curve})" if cert.curve else "")
    dates = f"valid {_day(cert.not_before_ns)} to {_day(cert.not_after_ns)}"
    return f"{cert.subject} issued by {cert.issuer}; {key}; {dates}"


def _day(ns: int) -> str:
    return datetime.fromtimestamp(ns // 1_000_000_000, UTC).strftime("%Y-%m-%d %H:%M UTC")
