"""The report as a plain JSON-ready tree: schema `wsdiag/1`, the contract scripts rely on.

Field names here are fixed (see README "JSON schema"); new fields may be added, none renamed.
Every string passes through the `Redactor` before it leaves, so no output format can leak a
secret the others hide.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from analyzer import __version__
from analyzer.model import (
    Anomaly,
    Diagnosis,
    Finding,
    Handshake,
    HttpRequest,
    HttpResponse,
    InputSummary,
    Opcode,
    OtaDiagnosis,
    OtaExchange,
    Outcome,
    Report,
    TlsDetails,
    Transport,
    WsFrame,
    is_failure,
)
from analyzer.redact import Redactor
from analyzer.report.select import EVERYTHING, Selection

SCHEMA = "wsdiag/1"


def iso(ts_ns: int) -> str | None:
    if not ts_ns:
        return None
    try:
        stamp = datetime.fromtimestamp(ts_ns // 1_000_000_000, UTC)
    except (ValueError, OverflowError, OSError):  # a damaged or fuzzed timestamp past year 9999
        return None
    return stamp.replace(microsecond=(ts_ns // 1000) % 1_000_000).isoformat().replace("+00:00", "Z")


def epoch(ts_ns: int) -> float | None:
    return round(ts_ns / 1e9, 6) if ts_ns else None


def text_of(data: bytes) -> tuple[str, str]:
    """Body bytes as text: UTF-8 when valid, else latin-1 (lossless); and which it was."""
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


def anomaly(a: Anomaly) -> dict[str, Any]:
    return {"name": a.name, "detail": a.detail, "frame": a.frame}


def _message(m: HttpRequest | HttpResponse) -> dict[str, Any]:
    """The fields requests and responses share: headers in wire order, body, time, frames."""
    body, enc = text_of(m.body)
    return {
        "version": m.version,
        "headers": [[n, v] for n, v in m.headers],
        "body": body,
        "body_encoding": enc,
        "body_truncated": m.body_truncated,
        "time": iso(m.ts_ns),
        "epoch": epoch(m.ts_ns),
        "frames": list(m.frames),
        "anomalies": list(m.anomalies),
    }


def request(r: HttpRequest | None) -> dict[str, Any] | None:
    return None if r is None else {"method": r.method, "target": r.target, **_message(r)}


def response(r: HttpResponse | None) -> dict[str, Any] | None:
    return None if r is None else {"status": r.status, "reason": r.reason, **_message(r)}


def frame(f: WsFrame) -> dict[str, Any]:
    try:
        opname = Opcode(f.opcode).name.lower()
    except ValueError:
        opname = f"reserved-{f.opcode:#x}"
    out: dict[str, Any] = {
        "direction": f.direction,
        "time": iso(f.ts_ns),
        "epoch": epoch(f.ts_ns),
        "frame": f.frame,
        "opcode": opname,
        "fin": f.fin,
        "rsv1": f.rsv1,
        "masked": f.masked,
        "length": f.length,
        "inflated": f.inflated,
        "truncated": f.truncated,
    }
    if f.opcode == Opcode.CLOSE:
        out["close_code"] = f.close_code
        out["close_reason"] = f.close_reason
    elif f.opcode in (Opcode.TEXT, Opcode.CONTINUATION) and _is_text(f.payload):
        out["text"] = f.payload.decode("utf-8", "replace")
    else:
        out["hex"] = f.payload[:256].hex()
    if f.anomalies:
        out["anomalies"] = list(f.anomalies)
    return out


def _is_text(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def transport(t: Transport) -> dict[str, Any]:
    return {
        "syn": t.syn,
        "syn_ack": t.syn_ack,
        "client_fin": t.client_fin,
        "server_fin": t.server_fin,
        "client_rst": t.client_rst,
        "server_rst": t.server_rst,
        "midstream": t.midstream,
        "client_payload": str(t.client_payload),
        "server_payload": str(t.server_payload),
        "client_bytes": t.client_bytes,
        "server_bytes": t.server_bytes,
        "syn_retries": t.syn_retries,
        "gaps": t.gaps,
        "client_bad_checksums": t.client_bad_checksums,
        "server_bad_checksums": t.server_bad_checksums,
        "closed_by": t.closed_by,
        "idle_before_close_s": round((t.closed_ns - t.last_data_ns) / 1e9, 3)
        if t.closed_ns and t.last_data_ns and t.closed_ns >= t.last_data_ns
        else None,
        "end": iso(t.last_ns),
        "tls": {
            "server_hello": t.tls_server_hello,
            "alert": list(t.tls_alert) if t.tls_alert else None,
            "alert_by": t.tls_alert_by,
            "sni": t.tls_sni,
            **tls_details(t.tls),
        }
        if str(t.client_payload) == "tls" or str(t.server_payload) == "tls" or t.tls is not None
        else None,
    }


def tls_details(d: TlsDetails | None) -> dict[str, Any]:
    """The TLS facts of `analyzer.tls` (no key material: none is ever kept in the model)."""
    if d is None:
        return {}
    from analyzer.tlsinfo import alert_name

    return {
        "version": d.version,
        "offered_versions": list(d.offered_versions),
        "cipher_suite": f"0x{d.cipher_suite:04x}" if d.cipher_suite is not None else None,
        "alpn_offered": list(d.alpn_offered),
        "alpn": d.alpn,
        "certificates": [
            {
                "subject": c.subject,
                "issuer": c.issuer,
                "not_before": iso(c.not_before_ns) or epoch(c.not_before_ns),
                "not_after": iso(c.not_after_ns) or epoch(c.not_after_ns),
                "key_type": c.key_type,
                "key_bits": c.key_bits,
                "curve": c.curve,
                "self_signed": c.self_signed,
                "is_ca": c.is_ca,
                "names": list(c.names),
                "sha256": c.sha256,
            }
            for c in d.certificates
        ],
        "certificates_hidden": d.certificates_hidden,
        "alerts": [
            {
                "by": a.by,
                "level": a.level,
                "description": a.description if a.description >= 0 else None,
                "name": alert_name(a.description) if a.description >= 0 else "encrypted",
                "frame": a.frame,
            }
            for a in d.alerts
        ],
        "completed": d.completed,
        "decrypted": d.decrypted,
        "keys": d.keys,
        "client_certificate_requested": d.client_certificate_requested,
    }


def finding(f: Finding) -> dict[str, Any]:
    return {
        "name": f.name,
        "code": f.code,
        "severity": str(f.severity),
        "message": f.message,
        "evidence": f.evidence,
        "fix": f.fix,
    }


def handshake(d: Diagnosis, path: str) -> dict[str, Any]:
    h: Handshake = d.handshake
    return {
        "input": path,
        "tcp_stream": h.tcp_stream,
        "client": str(h.client),
        "server": str(h.server),
        "tunnel": h.tunnel,
        "client_mac": h.client_mac,
        "server_mac": h.server_mac,
        "start": iso(h.start_ns),
        "start_epoch": epoch(h.start_ns),
        "outcome": str(h.outcome),
        "upgrade": _protocol(h),
        "failed": is_failure(d),
        "request": request(h.request),
        "response": response(h.response),
        "frames": [frame(f) for f in h.frames],
        "transport": transport(h.transport),
        "anomalies": [anomaly(a) for a in h.anomalies],
        "cause": finding(d.cause) if d.cause else None,
        "findings": [finding(f) for f in d.findings if f is not d.cause],
        "reproduce": d.reproduce,
        "wireshark_filter": f"tcp.stream eq {h.tcp_stream}",
    }


def _protocol(h: Handshake) -> str | None:
    """The protocol the upgrade asked for (`websocket`, `h2c`, `tcp`…), as the request named it."""
    for msg in (h.request, h.response):
        value = msg.header("upgrade") if msg is not None else None
        if value:
            return value.strip().lower()[:40]
    return None


def ota(d: OtaDiagnosis, path: str) -> dict[str, Any]:
    o = d.exchange
    return {
        "input": path,
        "tcp_stream": o.tcp_stream,
        "client": str(o.client),
        "server": str(o.server),
        "client_mac": o.client_mac,
        "request": request(o.request),
        "response": response(o.response),
        "failed": d.cause is not None,
        "cause": finding(d.cause) if d.cause else None,
        "findings": [finding(f) for f in d.findings if f is not d.cause],
    }


def input_summary(s: InputSummary, r: Report | None) -> dict[str, Any]:
    return {
        "path": s.path,
        "format": s.format,
        "packets": s.packets,
        "tcp_segments": s.tcp_segments,
        "bytes": s.bytes_read,
        "readable": s.readable_to_end and s.error is None,
        "error": s.error,
        "connections": r.connections if r else 0,
        "tls_sessions": r.tls_sessions if r else 0,
        **({"engine": r.engine} if r is not None and r.engine != "wsdiag" else {}),
        **({"cross_check": list(r.cross_check)} if r is not None and r.cross_check is not None else {}),
        "anomalies": [anomaly(a) for a in s.anomalies],
    }


def _redacted(node: dict[str, Any], red: Redactor) -> dict[str, Any]:
    out = red.tree(node)
    assert isinstance(out, dict)
    return out


def _handshake_redactor(d: Diagnosis, otas: list[OtaExchange], enabled: bool) -> Redactor:
    """A handshake's own secrets, plus those its device got from OTA (they may be quoted)."""
    h = d.handshake
    return Redactor.for_traffic(
        [h.request, h.response], otas, enabled=enabled, payloads=[f.payload for f in h.frames]
    )


def handshake_docs(
    reports: list[Report], show_secrets: bool = False, selection: Selection = EVERYTHING
) -> Iterator[dict[str, Any]]:
    """The handshake objects (those `selection` keeps), one at a time. Each is redacted with its
    own secrets (and its device's OTA answers, shown or not) plus the secret shapes, so the work
    grows with the report, not with its square; and a writer that streams them never holds the
    whole report as text."""
    for r in reports:
        otas_of: dict[str, list[OtaExchange]] = {}
        for o in r.otas:
            otas_of.setdefault(o.exchange.client.ip, []).append(o.exchange)
        for d in r.diagnoses:
            if selection.keep(d):
                red = _handshake_redactor(d, otas_of.get(d.handshake.client.ip, []), not show_secrets)
                yield _redacted(handshake(d, r.input.path), red)


def ota_docs(
    reports: list[Report], show_secrets: bool = False, selection: Selection = EVERYTHING
) -> Iterator[dict[str, Any]]:
    for r in reports:
        for o in r.otas:
            if selection.keep_ota(o):
                red = Redactor.for_traffic([], [o.exchange], enabled=not show_secrets)
                yield _redacted(ota(o, r.input.path), red)


def input_counts(reports: list[Report]) -> dict[str, list[int]]:
    """Per input path: [handshakes, failed (handshakes and OTA checks), OTA exchanges]."""
    counts: dict[str, list[int]] = {}
    for r in reports:
        c = counts.setdefault(r.input.path, [0, 0, 0])
        c[0] += len(r.diagnoses)
        c[1] += len(r.failed)
        c[2] += len(r.otas)
    return counts


def head(reports: list[Report], show_secrets: bool = False) -> dict[str, Any]:
    """Everything of the document before its handshakes: counted from the diagnoses, so it can
    be written before them."""
    diagnoses = [d for r in reports for d in r.diagnoses]
    otas = [o for r in reports for o in r.otas]
    causes: dict[str, int] = {}
    for cause in [d.cause for d in diagnoses] + [o.cause for o in otas]:
        if cause is not None:
            causes[cause.name] = causes.get(cause.name, 0) + 1
    return {
        "schema": SCHEMA,
        "tool": {"name": "wsdiag", "version": __version__},
        "inputs": [_redacted(input_summary(r.input, r), Redactor((), not show_secrets)) for r in reports],
        "summary": {
            "handshakes": len(diagnoses),
            "failed": sum(map(is_failure, diagnoses)) + sum(1 for o in otas if o.cause is not None),
            "upgraded": sum(1 for d in diagnoses if d.handshake.outcome == Outcome.UPGRADED),
            "causes": dict(sorted(causes.items())),
        },
    }


def document(reports: list[Report], show_secrets: bool = False) -> dict[str, Any]:
    """The whole report as one tree (`json_chunks` writes the same text without building it)."""
    return {
        **head(reports, show_secrets),
        "handshakes": list(handshake_docs(reports, show_secrets)),
        "ota": list(ota_docs(reports, show_secrets)),
        "secrets": "shown" if show_secrets else "redacted",
    }


def json_chunks(
    reports: list[Report],
    show_secrets: bool = False,
    indent: int | None = None,
    selection: Selection = EVERYTHING,
) -> Iterator[str]:
    """`json_text(document(...), indent)`, piece by piece: one handshake's text at a time, so
    a report of thousands of handshakes never exists whole in memory (as a tree or as text).
    `selection` narrows the lists; `summary` still counts every handshake."""
    from analyzer.textsafe import json_text

    nl = "\n" if indent else ""
    pad = " " * (indent or 0)
    top = json_text(head(reports, show_secrets), indent)
    yield top[: -len(nl + "}")]

    def items(docs: Iterator[dict[str, Any]]) -> Iterator[str]:
        first = True
        for doc in docs:
            text = json_text(doc, indent)
            if indent:
                text = pad * 2 + text.replace("\n", "\n" + pad * 2)
            yield ("" if first else ",") + (nl or ("" if first else " ")) + text
            first = False
        yield (nl + pad + "]") if not first else "]"

    yield f",{nl or ' '}{pad}\"handshakes\": ["
    yield from items(handshake_docs(reports, show_secrets, selection))
    yield f",{nl or ' '}{pad}\"ota\": ["
    yield from items(ota_docs(reports, show_secrets, selection))
    secrets = json_text("shown" if show_secrets else "redacted")
    yield f",{nl or ' '}{pad}\"secrets\": {secrets}{nl}}}"
