"""The data types that flow through wsdiag, one per concept.

Data moves one way: a source yields `Segment`s, the TCP reassembler turns them into in-order
stream bytes, the handshake tracker builds `Handshake`s (and `OtaExchange`s), the rules attach
`Finding`s, and reporters render a `Report`. Nothing here imports scapy, rich or typer, so every
stage can be tested with plain values.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One side of a TCP connection. `ip` is the textual address (IPv6 in compressed form)."""

    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


class TcpFlags(enum.IntFlag):
    FIN = 0x01
    SYN = 0x02
    RST = 0x04
    PSH = 0x08
    ACK = 0x10
    URG = 0x20
    ECE = 0x40
    CWR = 0x80


@dataclass(frozen=True, slots=True)
class Segment:
    """One captured TCP segment, already stripped of link and IP layers.

    `frame` is 1-based and equals Wireshark's frame number, so a user can jump to it.
    `ts_ns` is kept as integer nanoseconds: a float loses sub-microsecond precision today.
    """

    frame: int
    ts_ns: int
    src: Endpoint
    dst: Endpoint
    seq: int
    ack: int
    flags: int
    payload: bytes
    src_mac: str | None = None
    dst_mac: str | None = None
    checksum_ok: bool | None = None  # TCP checksum of a segment with payload; None: not checkable


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something odd in the input that was read past (a Zeek 'weird').

    `name` is a stable kebab-case id (e.g. `capture-truncated`, `rexmit-inconsistency`);
    `detail` is human text with no captured secrets in it.
    """

    name: str
    detail: str = ""
    frame: int | None = None


Header = tuple[str, str]
"""A header as seen on the wire: name and value decoded as latin-1 (lossless), casing kept."""


def header_index(headers: tuple[Header, ...]) -> dict[str, list[str]]:
    """Values by lower-cased name, in wire order."""
    index: dict[str, list[str]] = {}
    for n, v in headers:
        index.setdefault(n.lower(), []).append(v)
    return index


class _HeaderLookup:
    """Case-insensitive lookups over an HTTP head's `headers`, shared by requests and responses.

    The rules ask hundreds of thousands of questions of a few thousand heads on a big capture;
    the index, built once per head, makes each an O(1) lookup instead of a scan.
    """

    __slots__ = ()
    headers: tuple[Header, ...]
    _index: dict[str, list[str]]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", header_index(self.headers))

    def header(self, name: str) -> str | None:
        values = self._index.get(name.lower())
        return values[0] if values else None

    def headers_named(self, name: str) -> list[str]:
        return list(self._index.get(name.lower(), ()))


@dataclass(frozen=True, slots=True)
class HttpRequest(_HeaderLookup):
    method: str
    target: str
    version: str
    headers: tuple[Header, ...]
    body: bytes = b""
    body_truncated: bool = False
    ts_ns: int = 0
    frames: tuple[int, ...] = ()
    anomalies: tuple[str, ...] = ()
    _index: dict[str, list[str]] = field(init=False, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class HttpResponse(_HeaderLookup):
    version: str
    status: int
    reason: str
    headers: tuple[Header, ...]
    body: bytes = b""
    body_truncated: bool = False
    ts_ns: int = 0
    frames: tuple[int, ...] = ()
    anomalies: tuple[str, ...] = ()
    _index: dict[str, list[str]] = field(init=False, repr=False, compare=False)


class Opcode(enum.IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


@dataclass(frozen=True, slots=True)
class WsFrame:
    """One WebSocket frame seen after a 101.

    `payload` is unmasked, inflated when permessage-deflate compressed it (`inflated`), and cut
    to a limit (`truncated`). `length` is the payload length announced on the wire.
    """

    direction: str  # "client" (client to server) or "server"
    ts_ns: int
    frame: int | None
    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    masked: bool
    length: int
    payload: bytes
    truncated: bool = False
    inflated: bool = False
    close_code: int | None = None
    close_reason: str | None = None
    anomalies: tuple[str, ...] = ()

    @property
    def text(self) -> str | None:
        """The payload as text when it is a text frame (or a close reason), else None."""
        if self.opcode == Opcode.TEXT:
            return self.payload.decode("utf-8", "replace")
        return None


class Outcome(enum.StrEnum):
    UPGRADED = "upgraded"
    REJECTED = "rejected"
    NO_RESPONSE = "no-response"
    RESET = "reset"
    NOT_HTTP = "not-http"


class Payload(enum.StrEnum):
    """What the first bytes of one direction of a connection looked like."""

    NONE = "none"
    HTTP = "http"
    TLS = "tls"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class CertInfo:
    """One X.509 certificate as the server sent it (TLS 1.2 Certificate message, or decrypted).

    Times are integer nanoseconds like every timestamp here; `key_type` is "RSA", "EC", "Ed25519",
    "Ed448", "DSA" or "unknown"; `key_bits` is the RSA modulus or EC curve size.
    """

    subject: str
    issuer: str
    not_before_ns: int
    not_after_ns: int
    key_type: str
    key_bits: int = 0
    curve: str | None = None
    self_signed: bool = False
    is_ca: bool = False
    names: tuple[str, ...] = ()  # subjectAltName DNS names and IP addresses
    sha256: str = ""


@dataclass(frozen=True, slots=True)
class TlsAlert:
    """A TLS alert seen in plaintext (or decrypted by tshark with a key log)."""

    by: str  # "client" or "server"
    level: int
    description: int
    frame: int | None = None
    encrypted: bool = False  # inferred from an encrypted record's size (TLS 1.3), not read


@dataclass(frozen=True, slots=True)
class TlsDetails:
    """What a TLS connection showed before encryption: versions, names, certificates, alerts.

    `certificates_hidden` is true for TLS 1.3, where the Certificate message is encrypted.
    `completed` says both sides went on to send application data (the handshake succeeded).
    `decrypted` is set when tshark decrypted the application data with a key log.
    """

    offered_versions: tuple[str, ...] = ()
    version: str | None = None
    cipher_suite: int | None = None
    sni: str | None = None
    alpn_offered: tuple[str, ...] = ()
    alpn: str | None = None
    certificates: tuple[CertInfo, ...] = ()
    certificates_hidden: bool = False
    alerts: tuple[TlsAlert, ...] = ()
    client_app_records: int = 0
    server_app_records: int = 0
    completed: bool = False
    decrypted: bool = False
    keys: str | None = None  # with --keylog: "matched" or "missing" for this session
    client_random: str = ""  # public ClientHello random (hex), used to match key log lines
    client_certificate_requested: bool = False  # a CertificateRequest (mutual TLS) was seen


@dataclass(frozen=True, slots=True)
class Transport:
    """What TCP did around the handshake: the facts the no-answer verdicts rest on."""

    syn: bool = False
    syn_ack: bool = False
    client_fin: bool = False
    server_fin: bool = False
    client_rst: bool = False
    server_rst: bool = False
    midstream: bool = False
    client_payload: Payload = Payload.NONE
    server_payload: Payload = Payload.NONE
    client_bytes: int = 0
    server_bytes: int = 0
    first_ns: int = 0
    last_ns: int = 0
    syn_retries: int = 0
    gaps: int = 0
    client_bad_checksums: int = 0  # segments whose bytes were read, with a wrong TCP checksum
    server_bad_checksums: int = 0
    last_data_ns: int = 0  # the last segment that carried payload, either way
    closed_ns: int = 0  # the first FIN or RST
    closed_by: str | None = None  # "client" or "server": who sent it
    tls_server_hello: bool = False  # the server answered a ClientHello with a ServerHello
    tls_alert: tuple[int, int] | None = None  # (level, description) of the first plaintext TLS alert
    tls_alert_by: str | None = None  # "client" or "server": who sent that alert
    tls_sni: str | None = None  # server name the ClientHello asked for
    tls: TlsDetails | None = None  # full TLS facts (analyzer.tls), when the client spoke TLS


@dataclass(frozen=True, slots=True)
class Handshake:
    """One WebSocket (or other HTTP upgrade) attempt: a TCP connection and what it carried."""

    tcp_stream: int
    client: Endpoint
    server: Endpoint
    transport: Transport
    request: HttpRequest | None
    response: HttpResponse | None
    frames: tuple[WsFrame, ...] = ()
    client_mac: str | None = None
    server_mac: str | None = None
    anomalies: tuple[Anomaly, ...] = ()
    tunnel: str | None = None  # the request went through an HTTP proxy's CONNECT tunnel to this

    @property
    def start_ns(self) -> int:
        return self.transport.first_ns

    @property
    def outcome(self) -> Outcome:
        r, t = self.response, self.transport
        if r is not None:
            return Outcome.UPGRADED if r.status == 101 else Outcome.REJECTED
        if t.client_payload == Payload.TLS or t.server_payload in (Payload.TLS, Payload.OTHER):
            return Outcome.NOT_HTTP
        if t.server_rst:
            return Outcome.RESET
        return Outcome.NO_RESPONSE


@dataclass(frozen=True, slots=True)
class OtaExchange:
    """A xiaozhi OTA check (`POST …/ota/`) and its answer, kept to correlate with the WebSocket."""

    tcp_stream: int
    client: Endpoint
    server: Endpoint
    request: HttpRequest
    response: HttpResponse | None
    client_mac: str | None = None


class Severity(enum.StrEnum):
    ERROR = "error"  # this is (or will be) why the connection is refused
    WARNING = "warning"  # may be refused, depending on the server or a proxy
    INFO = "info"  # context worth knowing


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule's verdict on one handshake: what is wrong, the evidence, and the fix."""

    code: str
    name: str
    severity: Severity
    message: str
    evidence: str
    fix: str
    rank: int = 100  # lower = more likely the root cause; orders the causes of a failure


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """A handshake with the findings the rules attached. `findings[0]` is the verdict when failed."""

    handshake: Handshake
    findings: tuple[Finding, ...] = ()
    cause: Finding | None = None
    reproduce: str | None = None


@dataclass(frozen=True, slots=True)
class OtaDiagnosis:
    """Findings on an OTA exchange itself: it refused the device (404, missing ids) or handed out
    a WebSocket URL the device cannot use. `cause` is the first ERROR, as for handshakes."""

    exchange: OtaExchange
    findings: tuple[Finding, ...] = ()
    cause: Finding | None = None


@dataclass(slots=True)
class InputSummary:
    """What reading one input gave: counts and anomalies, filled as the source is read."""

    path: str
    format: str = "unknown"
    packets: int = 0
    tcp_segments: int = 0
    bytes_read: int = 0
    anomalies: list[Anomaly] = field(default_factory=list)
    readable_to_end: bool = True
    error: str | None = None


@dataclass(slots=True)
class Report:
    """Everything one input gave: its summary, the diagnosed handshakes and the OTA exchanges."""

    input: InputSummary
    diagnoses: list[Diagnosis] = field(default_factory=list)
    otas: list[OtaDiagnosis] = field(default_factory=list)
    connections: int = 0
    tls_sessions: int = 0
    engine: str = "wsdiag"  # "wsdiag" (own reassembly) or "tshark" (Wireshark's dissection)
    cross_check: tuple[str, ...] | None = None  # --cross-check: each disagreement, one line each

    @property
    def failed(self) -> list[Diagnosis | OtaDiagnosis]:
        return [*(d for d in self.diagnoses if is_failure(d)), *(o for o in self.otas if o.cause is not None)]


def is_failure(d: Diagnosis) -> bool:
    """A handshake failed when it was not upgraded, or was upgraded and then refused in-band."""
    return d.cause is not None or d.handshake.outcome is not Outcome.UPGRADED
