"""TLS facts without keys, decryption with a key log, and the WS5xx verdicts — on real captures.

captures/tls/*.pcap were recorded on loopback by captures/record/record.py (real Python ssl,
websockets and nginx; certificates made by the recorder; key logs written by the clients through
`SSLContext.keylog_filename`). The public captures with key logs are described in
tests/data/public/MANIFEST.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.crosscheck import analyze
from analyzer.errors import UsageError
from analyzer.limits import DEFAULT_LIMITS
from analyzer.model import CertInfo, InputSummary, Outcome, TlsAlert, TlsDetails
from analyzer.sources.tshark import tshark_path
from analyzer.tls import certs, keylog
from analyzer.tls.decrypt import harvest as decrypt_harvest
from analyzer.tls.records import TlsReader, parse_hello
from analyzer.tls.session import handshake_failed

ROOT = Path(__file__).resolve().parent.parent
TLS = ROOT / "captures" / "tls"
PUBLIC = Path(__file__).parent / "data" / "public"
needs_tshark = pytest.mark.skipif(tshark_path() is None, reason="tshark not installed")


def cause(report: object) -> str | None:
    [d] = report.diagnoses  # type: ignore[attr-defined]
    return d.cause.name if d.cause else None


# ---- without keys ----------------------------------------------------------------------------


def test_tls12_facts_from_the_capture_alone() -> None:
    r = analyze(str(PUBLIC / "zeek/tls12-decryption.pcap"))
    assert r.tls_sessions == 1 and not r.diagnoses  # a good session is not a handshake to report
    from analyzer.run import file_segments
    from analyzer.tls.decrypt import TransportTable

    table = TransportTable(DEFAULT_LIMITS)
    for seg in file_segments(str(PUBLIC / "zeek/tls12-decryption.pcap"), InputSummary("x"), DEFAULT_LIMITS):
        table.feed(seg)
    table.flush()
    tls = table.transports[0].tls
    assert tls is not None
    assert tls.offered_versions == ("TLS 1.3", "TLS 1.2") and tls.version == "TLS 1.2"
    assert tls.sni == "heise.de" and tls.alpn_offered == ("h2", "http/1.1") and tls.alpn == "http/1.1"
    assert [c.subject for c in tls.certificates] == ["CN=heise.de", "CN=R3,O=Let's Encrypt,C=US"]
    assert tls.certificates[0].key_type == "RSA" and tls.certificates[0].key_bits == 2048
    assert certs.chain_status(tls.certificates) == "ends-at-intermediate"
    assert tls.completed and not tls.certificates_hidden


def test_untrusted_ca_alert_from_the_client() -> None:
    r = analyze(str(TLS / "tls-untrusted-ca-tls12.pcap"))
    assert cause(r) == "untrusted-certificate"
    t = r.diagnoses[0].handshake.transport
    assert t.tls is not None and t.tls.alerts[0] == TlsAlert("client", 2, 48, t.tls.alerts[0].frame)
    assert certs.chain_status(t.tls.certificates) == "complete"  # leaf + the self-signed test CA


def test_expired_certificate() -> None:
    r = analyze(str(TLS / "tls-expired-certificate-tls12.pcap"))
    assert cause(r) == "certificate-expired"
    names = {f.name for f in r.diagnoses[0].findings}
    assert "tls-handshake-failed" in names


def test_scheme_mixups_are_named() -> None:
    assert cause(analyze(str(ROOT / "captures/tls-clienthello-to-plain-ws-port.pcap"))) == "tls-to-plain-port"
    assert cause(analyze(str(ROOT / "captures/plain-http-to-python-tls-port.pcap"))) == "plain-to-tls-port"


def test_tls13_certificate_is_hidden() -> None:
    r = analyze(str(ROOT / "captures/tls-good-wss-python.pcap"))
    assert r.tls_sessions == 1 and not r.diagnoses


# ---- with keys -------------------------------------------------------------------------------


@needs_tshark
def test_403_behind_tls_is_diagnosed_like_plain_tcp() -> None:
    r = analyze(str(TLS / "tls-nginx-403-keylog.pcap"), keylog=str(TLS / "tls-nginx-403-keylog.keylog"))
    assert cause(r) == "proxy-rejected"
    hs = r.diagnoses[0].handshake
    assert (
        hs.response is not None
        and hs.response.status == 403
        and hs.response.header("server") == "nginx/1.22.1"
    )
    assert hs.request is not None and hs.request.target == "/xiaozhi/v1/"
    assert [n for n, _ in hs.request.headers] == [
        "Host", "Authorization", "Client-Id", "Connection", "Device-Id", "Protocol-Version",
        "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Upgrade",
    ]  # fmt: skip
    assert hs.request.frames and hs.request.frames[0] > 3  # real frame numbers of the capture
    tls = hs.transport.tls
    assert tls is not None and tls.decrypted and tls.keys == "matched" and tls.version == "TLS 1.2"
    plain = analyze(str(ROOT / "captures/nginx-deny-403.pcap"))
    assert cause(plain) == "proxy-rejected"


@needs_tshark
def test_good_wss_decrypts_to_101_and_frames() -> None:
    r = analyze(str(TLS / "tls-wss-good-keylog.pcap"), keylog=str(TLS / "tls-wss-good-keylog.keylog"))
    [d] = r.diagnoses
    hs = d.handshake
    assert hs.outcome is Outcome.UPGRADED and d.cause is None
    assert hs.request is not None and hs.request.header("device-id") == "a0:b7:65:12:34:56"
    assert hs.request.header("host") == "localhost:8443"
    assert [f.text for f in hs.frames if f.text] == ["hi", "hi"]
    assert hs.transport.tls is not None and hs.transport.tls.version == "TLS 1.3"


@needs_tshark
def test_ecc_certificate_warning_on_a_good_session() -> None:
    r = analyze(
        str(TLS / "tls-ecc-certificate-tls12.pcap"), keylog=str(TLS / "tls-ecc-certificate-tls12.keylog")
    )
    [d] = r.diagnoses
    assert d.cause is None and d.handshake.outcome is Outcome.UPGRADED
    ecc = [f for f in d.findings if f.name == "ecc-certificate"]
    assert ecc and ecc[0].severity == "warning"


@needs_tshark
@pytest.mark.parametrize(
    ("capture", "keys", "requests"),
    [
        ("zeek/tls12-decryption.pcap", "zeek/tls12-decryption.keylog", [("GET", "/")]),
        ("zeek/tls-1.2-stream-keylog.pcap", "zeek/tls-1.2-stream-keylog.keylog", 16),
        ("scapy/tls_nss_example.pcap", "scapy/tls_nss_example.keys.txt", [("GET", "/pki/srv_key.pem")] * 2),
    ],
)
def test_public_key_logs_decrypt_http11(capture: str, keys: str, requests: object) -> None:
    msgs: list = []
    summary = InputSummary(capture)
    decrypt_harvest(str(PUBLIC / capture), summary, DEFAULT_LIMITS, str(PUBLIC / keys), msgs)
    got = [(m[2][0], m[2][1]) for m in msgs if m[1]]
    if isinstance(requests, int):
        assert len(got) == requests and all(method == "GET" for method, _ in got)
    else:
        assert got == requests
    if capture.startswith("zeek/tls12"):
        assert [m[2][1] for m in msgs if not m[1]] == ["301"]
    assert "tls-keys-missing" not in {a.name for a in summary.anomalies}


@needs_tshark
def test_keys_embedded_in_pcapng_are_used() -> None:
    path = str(PUBLIC / "pcap2har-mikekap/firefox-tls13-facebook-dsb.pcapng")
    assert keylog.has_embedded_keys(path)
    r = analyze(path)
    detail = next(a.detail for a in r.input.anomalies if a.name == "tls-decrypted")
    assert detail.startswith("1 of 1 TLS sessions decrypted")  # HTTP/2 inside: no HTTP/1.1 request


@needs_tshark
def test_wrong_key_log_says_keys_are_missing() -> None:
    r = analyze(
        str(PUBLIC / "zeek/tls12-decryption.pcap"), keylog=str(PUBLIC / "scapy/tls_nss_example.keys.txt")
    )
    assert "tls-keys-missing" in {a.name for a in r.input.anomalies}


@needs_tshark
def test_keys_never_reach_the_output(tmp_path: Path) -> None:
    keyfile = TLS / "tls-nginx-403-keylog.keylog"
    secrets = {line.split()[2] for line in keyfile.read_text().splitlines() if len(line.split()) == 3}
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(TLS / "tls-nginx-403-keylog.pcap"),
         "--keylog", str(keyfile), "--format", "json", "--verbose"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["handshakes"][0]["cause"]["name"] == "proxy-rejected"
    assert doc["handshakes"][0]["transport"]["tls"]["decrypted"] is True
    for s in secrets:
        assert s.lower() not in (proc.stdout + proc.stderr).lower()


def test_bad_key_log_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "keys.txt"
    bad.write_text("not a key log\n")
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(TLS / "tls-nginx-403-keylog.pcap"),
         "--keylog", str(bad)],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and "NSS key log" in proc.stderr


# ---- units -----------------------------------------------------------------------------------


def test_reader_bounds_and_split_records() -> None:
    data = (TLS / "tls-untrusted-ca-tls12.pcap").read_bytes()
    assert data  # the byte-level reader is exercised through the captures; here: feeding 1 byte at a time
    from analyzer.run import file_segments

    segs = list(file_segments(str(TLS / "tls-untrusted-ca-tls12.pcap"), InputSummary("x"), DEFAULT_LIMITS))
    server = next(s for s in segs if s.src.port == 8443 and len(s.payload) > 1000).payload
    r = TlsReader()
    for i in range(len(server)):
        r.feed(server[i : i + 1])
    assert r.server_hello is not None and len(r.certificates) == 2 and not r.broken
    junk = TlsReader()
    junk.feed(b"GET / HTTP/1.1\r\n\r\n")
    assert junk.broken and junk.done


def test_reader_stops_where_the_rules_stop_looking() -> None:
    """A server's direction is done at its first application-data record; a client's at its
    second (one lone 19-byte record is a TLS 1.3 client's encrypted alert)."""
    record = b"\x17\x03\x03\x00\x13" + bytes(19)
    server = TlsReader(client=False)
    server.feed(record)
    assert server.done and server.app_records == 1
    client = TlsReader(client=True)
    client.feed(record)
    assert not client.done and client.encrypted_sizes == [19]
    client.feed(record + record)
    assert client.done and client.app_records == 2


def test_hello_parse_survives_truncation() -> None:
    with pytest.raises(IndexError):
        parse_hello(b"\x03\x03" + b"\x00" * 10, client=True)


def test_validity_and_names() -> None:
    c = CertInfo("CN=a", "CN=ca", 1_000, 2_000, "RSA", 2048, names=("*.example.com", "10.0.0.1"))
    assert certs.validity(c, 500) == "not-yet-valid" and certs.validity(c, 3_000) == "expired"
    assert certs.covers(c, "ws.example.com") and not certs.covers(c, "a.b.example.com")
    assert certs.covers(c, "10.0.0.1") and not certs.covers(c, "example.com")
    leaf_only = (CertInfo("CN=a", "CN=R11", 0, 1, "EC", 256),)
    assert certs.chain_status(leaf_only) == "leaf-only"


def test_tls13_encrypted_alert_is_a_failure() -> None:
    tls = TlsDetails(version="TLS 1.3", alerts=(TlsAlert("client", 2, -1, None, encrypted=True),))
    assert handshake_failed(tls)
    assert not handshake_failed(TlsDetails(version="TLS 1.3", completed=True))


def test_keylog_randoms_only() -> None:
    text = "# comment\nCLIENT_RANDOM " + "ab" * 32 + " " + "cd" * 48 + "\nbogus line\n"
    assert keylog.randoms(text) == {"ab" * 32}


def test_keylog_with_only_its_header_is_a_keylog_without_keys(tmp_path: Path) -> None:
    """Python and OpenSSL write their header line before any secret: when the handshake failed
    before keys existed (an expired certificate), that file is all there is. It is no error;
    a file of other lines still is one."""
    header = tmp_path / "failed.keylog"
    header.write_text("# TLS secrets log file, generated by OpenSSL / Python\n")
    assert keylog.read_keylog(str(header)) == set()
    other = tmp_path / "notes.txt"
    other.write_text("# notes\nthis is not a key log\n")
    with pytest.raises(UsageError, match="no NSS key log lines"):
        keylog.read_keylog(str(other))


def test_damaged_certificates_never_raise() -> None:
    """A certificate from the capture is hostile bytes: `cryptography` parses it lazily and
    raises KeyError, UnsupportedAlgorithm or ValueError on damaged fields (all three were found
    by mutating real captures). Every single-byte change of a real certificate gives facts or
    None, never an exception."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ws.example.com")])
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("ws.example.com")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    assert certs.parse_der(der) is not None
    for pos in range(len(der)):
        for value in (0x00, 0xFF, der[pos] ^ 0x01):
            certs.parse_der(der[:pos] + bytes([value]) + der[pos + 1 :])
