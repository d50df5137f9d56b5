"""An incremental reader of one direction's TLS records, up to the point encryption starts.

The Conversation feeds it the in-order bytes of a side that spoke TLS. It keeps at most one
partial record (application data is skipped, never buffered) and one partial handshake message
(bounded), so a 4 KiB certificate chain split over many segments costs no more than it must.
It records what the handshake said in cleartext: the ClientHello (versions, SNI, ALPN, random),
the ServerHello (chosen version, cipher, ALPN), the TLS 1.2 Certificate chain (DER, parsed later
by `certs`), alerts, and the sizes of the first encrypted records (a TLS 1.3 client that rejects
the certificate sends one 19-byte encrypted alert instead of its Finished).
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_RECORD = 18_432 + 256  # RFC 8446 §5.2 ciphertext limit plus slack for odd stacks
MAX_HANDSHAKE = 128 * 1024  # one handshake message (a certificate chain) kept at most
MAX_CERTS = 10
ENCRYPTED_SIZES_KEPT = 4
# Application-data records a direction is read up to. The client's second one tells a TLS 1.3
# client that sent only an encrypted alert (one 19-byte record) from one that went on; a server's
# first one means its handshake is over: all it sends after is encrypted and of no use to the
# rules. Reading further would push every packet of a TLS download through the slow path.
APP_RECORDS_READ = {True: 2, False: 1}  # keyed by "is the client's direction"

VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2", 0x0304: "TLS 1.3"}


def version_name(v: int) -> str:
    return VERSIONS.get(v, f"0x{v:04x}")


def is_grease(v: int) -> bool:
    """RFC 8701 GREASE values (0x0a0a, 0x1a1a, …) are noise a client adds on purpose."""
    return v & 0x0F0F == 0x0A0A and v >> 8 == v & 0xFF


@dataclass(slots=True)
class Hello:
    """The cleartext fields of a ClientHello or ServerHello that wsdiag reports."""

    legacy_version: int = 0
    random: bytes = b""
    versions: list[int] = field(default_factory=list)  # supported_versions (client: offered)
    cipher: int | None = None  # ServerHello only
    sni: str | None = None
    alpn: list[str] = field(default_factory=list)


@dataclass(slots=True)
class TlsReader:
    """Reads records of one direction; `done` once nothing more of interest can come."""

    client: bool = True  # the client's direction (or the server's): see APP_RECORDS_READ
    client_hello: Hello | None = None
    server_hello: Hello | None = None
    certificates: list[bytes] = field(default_factory=list)
    certificate_request: bool = False  # the server asked for a client certificate (TLS 1.2)
    alerts: list[tuple[int, int, int]] = field(default_factory=list)  # (level, desc, frame)
    encrypted_sizes: list[int] = field(default_factory=list)  # first encrypted records' lengths
    app_records: int = 0  # content type 23 records seen
    ccs: bool = False  # ChangeCipherSpec sent: what follows from this side is encrypted
    tls13: bool = False  # set by the Conversation when the ServerHello chose TLS 1.3
    broken: bool = False  # not (or no longer) parseable as TLS records
    _buf: bytearray = field(default_factory=bytearray)
    _skip: int = 0  # bytes of an application-data record still to skip
    _hs: bytearray = field(default_factory=bytearray)  # partial handshake message

    @property
    def done(self) -> bool:
        return self.broken or self.app_records >= APP_RECORDS_READ[self.client]

    def feed(self, data: bytes, frame: int = 0) -> None:
        if self.done:
            return
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        self._buf += data
        while not self.done and len(self._buf) >= 5:
            ctype, major, length = self._buf[0], self._buf[1], int.from_bytes(self._buf[3:5], "big")
            if not (20 <= ctype <= 24 and major == 3 and length <= MAX_RECORD):
                self.broken = True
                self._buf.clear()
                return
            if ctype == 23:
                self._app_record(length)
                continue
            if len(self._buf) < 5 + length:
                return
            body = bytes(self._buf[5 : 5 + length])
            del self._buf[: 5 + length]
            self._record(ctype, body, frame)

    def _app_record(self, length: int) -> None:
        self.app_records += 1
        if len(self.encrypted_sizes) < ENCRYPTED_SIZES_KEPT:
            self.encrypted_sizes.append(length)
        have = len(self._buf) - 5
        if have >= length:
            del self._buf[: 5 + length]
        else:
            self._skip = length - have
            self._buf.clear()

    def _record(self, ctype: int, body: bytes, frame: int) -> None:
        if ctype == 20:
            self.ccs = True
        elif ctype == 21:
            if self.ccs:
                if len(self.encrypted_sizes) < ENCRYPTED_SIZES_KEPT:
                    self.encrypted_sizes.append(len(body))
            elif len(body) == 2:
                self.alerts.append((body[0], body[1], frame))
        elif ctype == 22 and not self.ccs and not self.tls13:
            self._hs += body
            if len(self._hs) > MAX_HANDSHAKE + 4:
                self.broken = True
                return
            self._messages()

    def _messages(self) -> None:
        while len(self._hs) >= 4:
            mtype, mlen = self._hs[0], int.from_bytes(self._hs[1:4], "big")
            if mlen > MAX_HANDSHAKE:
                self.broken = True
                return
            if len(self._hs) < 4 + mlen:
                return
            msg = bytes(self._hs[4 : 4 + mlen])
            del self._hs[: 4 + mlen]
            try:
                if mtype == 1 and self.client_hello is None:
                    self.client_hello = parse_hello(msg, client=True)
                elif mtype == 2 and self.server_hello is None:
                    self.server_hello = parse_hello(msg, client=False)
                    self.tls13 = self.server_hello.versions == [0x0304]
                elif mtype == 11 and not self.certificates:
                    self.certificates = parse_certificate_list(msg)
                elif mtype == 13:  # CertificateRequest, in clear before TLS 1.3: mutual TLS
                    self.certificate_request = True
            except (IndexError, ValueError):
                pass  # a truncated or odd message: keep what the other messages gave


def _u16(b: bytes, p: int) -> int:
    if p + 2 > len(b):
        raise IndexError(p)
    return int.from_bytes(b[p : p + 2], "big")


def parse_hello(msg: bytes, client: bool) -> Hello:
    """ClientHello (RFC 8446 §4.1.2) or ServerHello (§4.1.3) body, without the 4-byte header."""
    h = Hello(legacy_version=_u16(msg, 0), random=msg[2:34])
    p = 34
    p += 1 + msg[p]  # legacy_session_id
    if client:
        p += 2 + _u16(msg, p)  # cipher_suites
        p += 1 + msg[p]  # legacy_compression_methods
    else:
        h.cipher = _u16(msg, p)
        p += 3
    if p + 2 > len(msg):
        return h  # no extensions (SSL 3.0 / old TLS 1.0 stacks)
    end = min(len(msg), p + 2 + _u16(msg, p))
    p += 2
    while p + 4 <= end:
        etype, elen = _u16(msg, p), _u16(msg, p + 2)
        ext = msg[p + 4 : p + 4 + elen]
        p += 4 + elen
        if etype == 0 and client:
            h.sni = _server_name(ext)
        elif etype == 16:
            h.alpn = _alpn(ext)
        elif etype == 43:
            if client and ext:
                vs = ext[1 : 1 + ext[0]]
                h.versions = [v for v in (_u16(vs, i) for i in range(0, len(vs) - 1, 2)) if not is_grease(v)]
            elif not client and len(ext) >= 2:
                h.versions = [_u16(ext, 0)]
    return h


def _server_name(ext: bytes) -> str | None:
    p = 2
    while p + 3 <= len(ext):
        ntype, nlen = ext[p], _u16(ext, p + 1)
        if ntype == 0:
            return ext[p + 3 : p + 3 + nlen].decode("ascii", "replace")
        p += 3 + nlen
    return None


def _alpn(ext: bytes) -> list[str]:
    out: list[str] = []
    p = 2
    while p < len(ext):
        n = ext[p]
        out.append(ext[p + 1 : p + 1 + n].decode("ascii", "replace"))
        p += 1 + n
    return out


def parse_certificate_list(msg: bytes) -> list[bytes]:
    """TLS 1.2 Certificate message (RFC 5246 §7.4.2): a 3-byte length, then 3-byte-length DERs."""
    total = int.from_bytes(msg[0:3], "big")
    end = min(len(msg), 3 + total)
    p = 3
    out: list[bytes] = []
    while p + 3 <= end and len(out) < MAX_CERTS:
        n = int.from_bytes(msg[p : p + 3], "big")
        der = msg[p + 3 : p + 3 + n]
        if len(der) != n:
            break
        out.append(der)
        p += 3 + n
    return out
