"""WS5xx: what the TLS handshake itself says — certificates, names, alerts — with or without keys.

These read `Transport.tls` (`model.TlsDetails`, filled by `analyzer.tls`). They name the concrete
reasons an ESP32 refuses a server: a CA it does not hold, a chain without its intermediate, dates
(its clock starts in 1970 until SNTP runs), an ECDSA key a 4G modem cannot use, a missing SNI.
WS004-WS007 (rules/transport.py) keep the scheme mix-ups and the bare alert.
"""

from __future__ import annotations

from collections.abc import Iterator

from analyzer.model import CertInfo, Handshake, Severity, TlsAlert, TlsDetails
from analyzer.rules._rule import Context, Hit, rule
from analyzer.tls.certs import chain_status, covers, describe, validity
from analyzer.tls.session import UNKNOWN_ALERT, fatal_alert, handshake_failed
from analyzer.tlsinfo import alert_name

TRUST_ALERTS = frozenset({42, 43, 46, 48})  # bad/unsupported/unknown certificate, unknown_ca
ALERT_MEANING = {
    10: "a message arrived out of order: the peer's TLS stack is broken or something rewrote the stream",
    20: "a record failed its integrity check: corrupted in transit or wrong keys",
    40: "no common parameters: no shared cipher suite, curve or signature algorithm (for example "
    "an ECDSA-only server and a client that can use only RSA)",
    42: "the client rejected the certificate (mbedTLS also sends this for a certificate that is "
    "not yet valid by its clock)",
    43: "the client cannot use this certificate type (key type or signature algorithm)",
    45: "the certificate is expired by the sender's clock",
    46: "the client could not validate the certificate (unknown issuer, name or other reason)",
    47: "a handshake field was out of range",
    48: "the client does not trust the certificate's CA: it is not in its CA bundle",
    50: "a message could not be decoded",
    51: "a signature or Finished check failed",
    70: "no TLS version both sides accept (for example a TLS 1.0-only device and a TLS 1.2+ server)",
    71: "the server requires stronger parameters than the client offered",
    80: "the sender hit an internal error",
    86: "a downgrade was detected",
    109: "a required extension is missing",
    112: "the server has no certificate for the SNI name the client asked for",
    116: "the server requires a client certificate",
    120: "no common ALPN protocol",
}


def alert_text(a: TlsAlert) -> str:
    if a.description == UNKNOWN_ALERT:
        return "an encrypted alert (TLS 1.3 hides which)"
    meaning = ALERT_MEANING.get(a.description)
    return f"{alert_name(a.description)} ({a.description})" + (f": {meaning}" if meaning else "")


def _tls(hs: Handshake) -> TlsDetails | None:
    return hs.transport.tls


def _trust_alert(tls: TlsDetails) -> TlsAlert | None:
    a = fatal_alert(tls)
    if a is not None and a.by == "client" and (a.description in TRUST_ALERTS or a.encrypted):
        return a
    return None


def _leaf(tls: TlsDetails) -> CertInfo | None:
    return tls.certificates[0] if tls.certificates else None


@rule(
    "WS501",
    "certificate-expired",
    Severity.ERROR,
    rank=8,
    title="The server's certificate was expired at capture time",
    fix="Renew the certificate (certbot renew / your CA) and reload the server; check that the renewal "
    "job runs and that the proxy serves the renewed file.",
)
def certificate_expired(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A certificate the server sent (TLS 1.2, or decrypted) whose notAfter is before the capture
    time of the connection.

    Why it is refused:
    Every verifying client rejects it (alert `certificate_expired`); clients that skip
    verification connect anyway, so it is an error when the handshake failed, else a warning.

    Example:
    `CN=ws.example.com … valid 2023-01-01 to 2023-04-01`, captured 2024-05-02.

    Fix:
    Renew and reload; automate renewal.

    References:
    RFC 5280 §4.1.2.5; field-failures E1.
    """
    tls = _tls(hs)
    if tls is None:
        return
    at = hs.transport.first_ns
    for i, cert in enumerate(tls.certificates):
        if validity(cert, at) == "expired":
            which = "the server's certificate" if i == 0 else f"chain certificate {i + 1}"
            yield Hit(
                f"{which} expired before the capture: {describe(cert)}",
                evidence=f"notAfter < capture time; sha256 {cert.sha256[:16]}…",
                severity=None if handshake_failed(tls) else Severity.WARNING,
            )
            return
    a = fatal_alert(tls)
    if not tls.certificates and a is not None and a.by == "client" and a.description == 45:
        yield Hit(
            f"the client ended the TLS handshake with {hs.server} with certificate_expired (45): by its "
            "clock the certificate has expired (TLS 1.3 encrypts the certificate: its dates need --keylog; "
            "a device clock far in the future says the same)",
            evidence=f"client alert 45{f' frame {a.frame}' if a.frame else ''}",
        )


@rule(
    "WS502",
    "certificate-not-yet-valid",
    Severity.ERROR,
    rank=8,
    title="The certificate is not valid yet (by the capture clock, or by a device clock stuck in 1970)",
    fix="If the server's certificate really starts later, fix the issuing clock; if the client rejects a "
    "valid certificate, set the device clock first (SNTP) before opening wss://.",
)
def certificate_not_yet_valid(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    (a) A certificate whose notBefore is after the capture time. (b) A client that ended the
    handshake with `certificate_expired` (45) or `bad_certificate` (42) although every
    certificate was valid at capture time: its own clock is wrong.

    Why it is refused:
    An ESP32 starts at 1970-01-01 until SNTP sets the time; mbedTLS then finds every
    certificate "not yet valid" (`MBEDTLS_X509_BADCERT_FUTURE`) and sends `bad_certificate`.

    Example:
    Valid certificate in the capture; ESP32 → `15 03 03 00 02 02 2a` right after it.

    Fix:
    Wait for SNTP (`esp_netif_sntp_sync_wait`) before connecting, or disable only the time
    check (`MBEDTLS_HAVE_TIME_DATE` off) if there is no clock at all.

    References:
    RFC 5280 §4.1.2.5; field-failures E1, C7.
    """
    tls = _tls(hs)
    if tls is None:
        return
    at = hs.transport.first_ns
    for cert in tls.certificates:
        if validity(cert, at) == "not-yet-valid":
            yield Hit(
                f"a certificate is not valid yet at capture time: {describe(cert)}",
                evidence="notBefore > capture time",
                severity=None if handshake_failed(tls) else Severity.WARNING,
            )
            return
    a = fatal_alert(tls)
    name = tls.sni or _host(hs)
    named = not tls.certificates or name is None or covers(tls.certificates[0], name)
    if (
        a is not None
        and a.by == "client"
        and a.description in (42, 45)
        and tls.certificates
        and all(validity(c, at) == "valid" for c in tls.certificates)
        and (a.description == 45 or named)  # a name the certificate lacks explains a 42 better
    ):
        yield Hit(
            f"the client rejected a certificate that is valid at capture time with {alert_text(a)}; "
            "a device whose clock is unset (1970) sees it as not yet valid",
            evidence=f"client alert {a.description}; certificates valid at capture time",
            severity=Severity.ERROR if a.description == 45 else Severity.WARNING,
            rank=7 if a.description == 45 else 30,
        )


@rule(
    "WS503",
    "untrusted-certificate",
    Severity.ERROR,
    rank=9,
    title="The client does not trust the server's certificate (unknown CA, bad certificate)",
    fix="Give the device the CA that issued the server certificate (ESP-IDF: esp_crt_bundle or "
    "`cert_pem`), or serve a certificate from a public CA in its bundle with the full chain.",
)
def untrusted_certificate(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The client ended the handshake with `unknown_ca` (48), `bad_certificate` (42),
    `unsupported_certificate` (43) or `certificate_unknown` (46) — or, in TLS 1.3, with an
    encrypted alert right after the server's (encrypted) certificate.

    Why it is refused:
    The device verifies the chain against its own CA bundle. A self-signed or private-CA
    certificate, a chain missing its intermediate, or a name the certificate does not cover
    all end here. ESP32 logs `esp-x509-crt-bundle: Failed to verify certificate` or
    `X509 - Certificate verification failed`.

    Example:
    ServerHello, Certificate (`CN=localhost`, self-signed) → client `15 03 03 00 02 02 30`.

    Fix:
    Install the issuing CA on the device, or use a public CA and send the full chain.

    References:
    RFC 8446 §6.2; field-failures E1.
    """
    tls = _tls(hs)
    if tls is None:
        return
    a = _trust_alert(tls)
    if a is None:
        return
    leaf = _leaf(tls)
    detail = ""
    if leaf is not None:
        status = chain_status(tls.certificates)
        if status == "self-signed-leaf":
            detail = f"; the certificate is self-signed ({leaf.subject}): the device must hold it as its CA"
        else:
            detail = f"; issuer {leaf.issuer}"
    elif tls.certificates_hidden:
        detail = "; the certificate itself is encrypted in TLS 1.3 (use --keylog or TLS 1.2 to see it)"
    yield Hit(
        f"the client aborted the TLS handshake with {hs.server}: {alert_text(a)}{detail}",
        evidence=f"client alert {'(encrypted record)' if a.encrypted else a.description}"
        + (f" frame {a.frame}" if a.frame else ""),
        rank=12 if a.encrypted else None,
    )


@rule(
    "WS504",
    "incomplete-chain",
    Severity.WARNING,
    rank=7,
    title="The server sent its certificate without the intermediate CA (or out of order)",
    fix="Serve the full chain: nginx `ssl_certificate fullchain.pem` (not cert.pem); Caddy/Traefik do it "
    "by default.",
)
def incomplete_chain(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The Certificate message (TLS 1.2, or decrypted) holds only the leaf, issued by a CA that is
    not the leaf itself, or certificates whose issuer/subject do not link up.

    Why it is refused:
    Browsers fetch missing intermediates (AIA) or cache them; an ESP32's bundle holds only root
    CAs, so a leaf without its intermediate never chains to a root: `unknown_ca`. It is an
    error when the client did reject it, a warning otherwise (the issuer may be a private root
    the device holds).

    Example:
    Certificate: `CN=ws.example.com` issued by `CN=R11,O=Let's Encrypt` and nothing else.

    Fix:
    Point the server at `fullchain.pem`.

    References:
    RFC 8446 §4.4.2; field-failures E1 (old Let's Encrypt chain).
    """
    tls = _tls(hs)
    if tls is None or not tls.certificates:
        return
    status = chain_status(tls.certificates)
    if status not in ("leaf-only", "out-of-order"):
        return
    leaf = tls.certificates[0]
    what = (
        f"the server sent only its own certificate, issued by {leaf.issuer}, without that issuer"
        if status == "leaf-only"
        else "the certificates the server sent do not link up (issuer of one is not the next one's subject)"
    )
    rejected = _trust_alert(tls) is not None
    yield Hit(
        what + ("; the client rejected it" if rejected else ""),
        evidence=f"{len(tls.certificates)} certificate(s) sent; chain {status}",
        severity=Severity.ERROR if rejected else None,
    )


@rule(
    "WS505",
    "ecc-certificate",
    Severity.WARNING,
    rank=9,
    title="The server's certificate has an ECDSA key: 4G modems (ML307) cannot use it",
    fix="Serve an RSA certificate (certbot --key-type rsa) on the port 4G devices use, or both (nginx "
    "accepts two ssl_certificate lines, RSA and ECDSA).",
)
def ecc_certificate(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The leaf certificate's key is EC (ECDSA) or EdDSA.

    Why it is refused:
    The TLS stack inside ML307 4G modems (used by xiaozhi 4G boards) rejects ECC server
    certificates: Wi-Fi boards work, 4G boards fail with `Ml307SslTransport: Failed to connect`.
    An error when the handshake then failed (`handshake_failure`, or the client left after the
    certificate), a warning otherwise, information once a session was established.

    Example:
    Certificate: `CN=ws.example.com`, key EC 256 (secp256r1).

    Fix:
    Issue an RSA certificate for that host (or serve RSA and ECDSA side by side).

    References:
    field-failures A7, E1 (xiaozhi-esp32-server #1613 "ecc 不支持").
    """
    tls = _tls(hs)
    leaf = _leaf(tls) if tls is not None else None
    if tls is None or leaf is None or leaf.key_type not in ("EC", "Ed25519", "Ed448"):
        return
    key = f"{leaf.key_type} {leaf.key_bits}" + (f" ({leaf.curve})" if leaf.curve else "")
    failed = handshake_failed(tls)
    severity = Severity.ERROR if failed else Severity.WARNING
    tail = (
        "; the handshake failed after it"
        if failed
        else "; fine for Wi-Fi boards, 4G (ML307) modems reject it"
    )
    yield Hit(f"the server's certificate has an {key} key{tail}", evidence=describe(leaf), severity=severity)


@rule(
    "WS506",
    "sni-missing",
    Severity.WARNING,
    rank=11,
    title="The client sent no SNI (server name) in its ClientHello",
    fix="Connect by host name, not IP address, and make sure the TLS client sets the server name "
    "(esp_tls `common_name`/`skip_common_name` off; mbedtls_ssl_set_hostname).",
)
def sni_missing(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A ClientHello without the server_name extension.

    Why it is refused:
    Servers with several certificates (nginx with several `server_name`s, Cloudflare, any CDN)
    pick the certificate by SNI; without it they serve a default certificate (name mismatch) or
    abort with `handshake_failure`/`unrecognized_name`. Clients connecting to an IP address send
    no SNI by design (RFC 6066 §3).

    Example:
    ClientHello with extensions supported_groups, signature_algorithms … but no server_name.

    Fix:
    Use the host name in the URL; set the TLS client's host name.

    References:
    RFC 6066 §3; field-failures B4.
    """
    tls = _tls(hs)
    if tls is None or tls.sni or not tls.offered_versions:
        return
    a = fatal_alert(tls)
    if a is not None and a.by == "server" and a.description in (40, 112):
        yield Hit(
            f"no SNI in the ClientHello and the server refused with {alert_text(a)}",
            evidence="ClientHello without server_name",
            severity=Severity.ERROR,
            rank=6,
        )
    elif tls.version is None:
        return  # the server never spoke TLS: another rule names why
    elif not tls.completed:
        yield Hit("no SNI in the ClientHello (connecting by IP address?)", evidence="no server_name")
    else:
        yield Hit(
            "no SNI in the ClientHello; this server did not need it",
            evidence="no server_name",
            severity=Severity.INFO,
        )


@rule(
    "WS507",
    "certificate-name-mismatch",
    Severity.WARNING,
    rank=10,
    title="The certificate does not cover the name the client asked for (SNI or Host)",
    fix="Issue the certificate for the host name in the device's URL (subjectAltName), or change the URL "
    "to a name the certificate covers.",
)
def certificate_name_mismatch(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The leaf certificate's subjectAltName (or CN) does not cover the SNI, or the Host header of
    the decrypted request when there was no SNI.

    Why it is refused:
    A verifying client compares the name it dialled with the certificate; mismatch ends with
    `bad_certificate`/`certificate_unknown`. An error when the client did reject it.

    Example:
    SNI `ws.example.com`; certificate names `example.com, www.example.com`.

    Fix:
    Add the name to the certificate, or dial a covered name.

    References:
    RFC 6125 §6; field-failures B4, E1.
    """
    tls = _tls(hs)
    leaf = _leaf(tls) if tls is not None else None
    if tls is None or leaf is None:
        return
    name = tls.sni or (_host(hs) if hs.request is not None else None)
    if not name or covers(leaf, name):
        return
    rejected = _trust_alert(tls) is not None
    names = ", ".join(leaf.names[:6]) or leaf.subject
    yield Hit(
        f"the certificate names {names}, not {name!r}" + ("; the client rejected it" if rejected else ""),
        evidence=f"{'SNI' if tls.sni else 'Host'} {name}",
        severity=Severity.ERROR if rejected else None,
        rank=7 if rejected else None,  # the name is why the client distrusted it
    )


def _host(hs: Handshake) -> str | None:
    if hs.request is None:
        return None
    host = (hs.request.header("host") or "").strip()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host or None


@rule(
    "WS508",
    "sni-host-mismatch",
    Severity.WARNING,
    rank=40,
    title="The TLS server name (SNI) and the HTTP Host header name different hosts",
    fix="Make the client use the same host name for TLS and HTTP (one URL); proxies route on one and "
    "check the other (nginx 421 Misdirected Request, Cloudflare 403).",
)
def sni_host_mismatch(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A decrypted request whose Host (without port) differs from the ClientHello's SNI.

    Why it is refused:
    nginx picks the `server` block by SNI and checks Host against it; CDNs refuse mismatches
    (domain fronting protection). A hand-built request with a stale Host triggers it.

    Example:
    SNI `ws.example.com`, `Host: 192.168.1.10`.

    Fix:
    Use one host name for both.

    References:
    RFC 9110 §7.4 (421); RFC 6066 §3; field-failures B4.
    """
    tls = _tls(hs)
    host = _host(hs)
    if tls is None or not tls.sni or not host:
        return
    if host.lower().rstrip(".") != tls.sni.lower().rstrip("."):
        yield Hit(f"SNI {tls.sni!r} but Host {host!r}", evidence="ClientHello server_name vs Host header")


@rule(
    "WS509",
    "tls-client-left-after-certificate",
    Severity.ERROR,
    rank=14,
    title="The client closed the TLS connection right after the server's certificate, without an alert",
    fix="The device did not accept the server's certificate or parameters: check its CA bundle, the "
    "chain, the key type (RSA for 4G modems) and its clock; its log says which.",
)
def tls_client_left(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The server's hello (and, in TLS 1.2, its certificate) came, then the client closed or reset
    the connection without finishing the handshake and without a readable alert.

    Why it is refused:
    Some embedded stacks (and ML307 modem firmware) drop the connection instead of sending an
    alert when they cannot verify or use the certificate.

    Example:
    ServerHello, Certificate, ServerHelloDone → client FIN.

    Fix:
    Read the device log (mbedTLS error code), then check trust, chain, key type and clock.

    References:
    field-failures E1, A7.
    """
    tls = _tls(hs)
    t = hs.transport
    if tls is None or tls.completed or tls.decrypted or tls.version is None or fatal_alert(tls) is not None:
        return
    if not (t.client_fin or t.client_rst):
        return
    if tls.client_certificate_requested:
        yield Hit(
            f"{hs.server} asked for a client certificate (CertificateRequest: mutual TLS) and the client "
            "closed without sending one: it has no certificate for this server",
            evidence=f"CertificateRequest ({tls.version}); client {'RST' if t.client_rst else 'FIN'}",
            fix="Give the client a certificate from the CA the server trusts for clients (nginx "
            "`ssl_client_certificate`; browsers: import it), or make it optional on the server.",
        )
        return
    what = "certificate" if tls.certificates else "hello"
    yield Hit(
        f"the client closed the connection after the server's {what} without finishing the TLS handshake",
        evidence=f"ServerHello ({tls.version}); client {'RST' if t.client_rst else 'FIN'}; no alert",
    )


@rule(
    "WS510",
    "tls-certificate-hidden",
    Severity.INFO,
    rank=90,
    title="TLS 1.3 encrypts the certificate: its facts need a key log (or a TLS 1.2 capture)",
    fix="Record with SSLKEYLOGFILE on the client (or server) and pass --keylog, or limit the server to "
    "TLS 1.2 while debugging (nginx `ssl_protocols TLSv1.2;`).",
)
def tls_certificate_hidden(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    A failed TLS 1.3 handshake: the certificate, and the reason the client gave up, are
    encrypted.

    Why it is refused:
    (Not a cause.) In TLS 1.3 everything after the ServerHello is encrypted with handshake
    keys, so wsdiag cannot read the chain or the alert without a key log.

    Example:
    ServerHello (TLS 1.3) → encrypted records → client closes.

    Fix:
    Capture keys, or test against TLS 1.2.

    References:
    RFC 8446 §2.
    """
    tls = _tls(hs)
    if tls is not None and tls.certificates_hidden and not tls.certificates and handshake_failed(tls):
        yield Hit(
            "the server certificate is encrypted (TLS 1.3); pass --keylog to read it", evidence="TLS 1.3"
        )


@rule(
    "WS511",
    "old-tls-version",
    Severity.WARNING,
    rank=20,
    title="TLS 1.0/1.1 offered or chosen: modern servers and CDNs refuse them",
    fix="Enable TLS 1.2 on the device (mbedTLS `MBEDTLS_SSL_PROTO_TLS1_2`), or allow TLS 1.0/1.1 on a "
    "server you control.",
)
def old_tls_version(hs: Handshake, ctx: Context) -> Iterator[Hit]:
    """What it checks:
    The client offered nothing newer than TLS 1.1, or the server chose TLS 1.1 or older.

    Why it is refused:
    TLS 1.0/1.1 are deprecated (RFC 8996); servers answer `protocol_version` (70).

    Example:
    ClientHello legacy_version 0x0301 and no supported_versions.

    Fix:
    Use TLS 1.2 or 1.3.

    References:
    RFC 8996; field-failures E1.
    """
    tls = _tls(hs)
    if tls is None:
        return
    old = {"SSL 3.0", "TLS 1.0", "TLS 1.1"}
    if tls.offered_versions and set(tls.offered_versions) <= old:
        a = fatal_alert(tls)
        failed = a is not None and a.description == 70
        yield Hit(
            f"the client offered only {', '.join(tls.offered_versions)}",
            evidence="ClientHello versions",
            severity=Severity.ERROR if failed else None,
            rank=6 if failed else None,
        )
    elif tls.version in old:
        yield Hit(f"the server chose {tls.version}", evidence="ServerHello version")


RULES = (
    certificate_expired,
    certificate_not_yet_valid,
    untrusted_certificate,
    incomplete_chain,
    ecc_certificate,
    sni_missing,
    certificate_name_mismatch,
    sni_host_mismatch,
    tls_client_left,
    tls_certificate_hidden,
    old_tls_version,
)
