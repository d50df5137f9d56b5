"""One connection's TLS facts, from the two directions' `TlsReader`s, as a `model.TlsDetails`."""

from __future__ import annotations

from analyzer.model import CertInfo, TlsAlert, TlsDetails
from analyzer.tls.records import TlsReader, version_name

TLS13_ALERT_RECORD = 19  # encrypted alert: 2 bytes + inner content type + 16-byte AEAD tag
CLOSE_NOTIFY = 0
UNKNOWN_ALERT = -1  # an alert inferred from a record size: its description is encrypted


def details(client: TlsReader, server: TlsReader | None) -> TlsDetails:
    ch = client.client_hello
    sh = server.server_hello if server is not None else None
    offered: tuple[str, ...] = ()
    if ch is not None:
        offered = tuple(version_name(v) for v in (ch.versions or [ch.legacy_version]))
    version = None
    if sh is not None:
        version = version_name(sh.versions[0] if sh.versions else sh.legacy_version)
    tls13 = version == "TLS 1.3"
    alerts = [TlsAlert("client", lvl, desc, fr or None) for lvl, desc, fr in client.alerts]
    if server is not None:
        alerts += [TlsAlert("server", lvl, desc, fr or None) for lvl, desc, fr in server.alerts]
    if tls13 and client.encrypted_sizes[:1] == [TLS13_ALERT_RECORD] and client.app_records <= 1:
        alerts.append(TlsAlert("client", 2, UNKNOWN_ALERT, None, encrypted=True))
    certs: tuple[CertInfo, ...] = ()
    if server is not None and server.certificates:
        from analyzer.tls.certs import parse_chain  # cryptography is imported only when needed

        certs = parse_chain(server.certificates)
    s_records = server.app_records if server is not None else 0
    if tls13:
        completed = bool(client.encrypted_sizes) and client.encrypted_sizes[0] != TLS13_ALERT_RECORD
    else:
        completed = client.ccs and server is not None and server.ccs and client.app_records > 0
    return TlsDetails(
        offered_versions=offered,
        version=version,
        cipher_suite=sh.cipher if sh is not None else None,
        sni=ch.sni if ch is not None else None,
        alpn_offered=tuple(ch.alpn) if ch is not None else (),
        alpn=(sh.alpn[0] if sh is not None and sh.alpn else None),
        certificates=certs,
        certificates_hidden=tls13,
        alerts=tuple(alerts),
        client_app_records=client.app_records,
        server_app_records=s_records,
        completed=bool(completed),
        client_certificate_requested=server is not None and server.certificate_request,
        client_random=ch.random.hex() if ch is not None else "",
    )


def fatal_alert(tls: TlsDetails) -> TlsAlert | None:
    """The first alert that ended the handshake (fatal, or any but close_notify)."""
    for a in tls.alerts:
        if a.description != CLOSE_NOTIFY and (a.level == 2 or a.encrypted):
            return a
    return None


def handshake_failed(tls: TlsDetails) -> bool:
    """A visible TLS failure: an alert ended it, or a server hello came and it never completed
    although the server had spoken (the client walked away after the certificate)."""
    if fatal_alert(tls) is not None:
        return True
    return tls.version is not None and not tls.completed and not tls.decrypted
