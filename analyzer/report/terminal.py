"""The human report: one block per handshake, the verdict and its fix first, then the evidence.

Where rich lives. Captured text never reaches rich as markup: it is escaped by `textsafe.safe`
and wrapped in `Text` objects, so a header value can neither paint the terminal nor inject
markup. It renders from the same redacted tree as JSON, so both show the same facts.
"""

from __future__ import annotations

from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from analyzer.textsafe import safe

OUTCOME_STYLE = {
    "upgraded": "green",
    "rejected": "red",
    "no-response": "yellow",
    "reset": "red",
    "not-http": "magenta",
}
SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
BODY_PREVIEW = 300
MAX_HEADERS_SHOWN = 40


def _line(*parts: tuple[str, str] | str) -> Text:
    t = Text()
    for p in parts:
        if isinstance(p, tuple):
            t.append(p[0], style=p[1])
        else:
            t.append(p)
    return t


def _answer(h: dict[str, Any]) -> Text:
    r = h["response"]
    t = h["transport"]
    if r is not None:
        server = next((v for n, v in r["headers"] if n.lower() == "server"), None)
        status = f"{r['status']} {safe(r['reason'], 80)}"
        return _line(
            "  ← ",
            (f"HTTP {status}", OUTCOME_STYLE.get(h["outcome"], "")),
            f"  (Server: {safe(server, 80)})" if server else "",
        )
    if t["client_payload"] == "tls":
        tls = t.get("tls") or {}
        if tls.get("alert") and tls.get("alert_by") == "client":
            return _line("  ← ", ("client spoke TLS, then " + _tls_answer(t) + " itself", "magenta"))
        return _line("  ← ", ("client spoke TLS; server " + _tls_answer(t), "magenta"))
    if t["server_payload"] == "tls":
        return _line("  ← ", ("server answered with TLS (" + _tls_answer(t) + ")", "magenta"))
    if not t["syn_ack"] and t["syn"]:
        what = "SYN answered by RST (port closed)" if t["server_rst"] else "SYN never answered"
        return _line("  ← ", (what, "yellow"))
    if t["server_rst"]:
        return _line("  ← ", ("connection reset by the server, no answer", "red"))
    if t["server_fin"]:
        return _line("  ← ", ("server closed the connection without answering", "yellow"))
    return _line("  ← ", ("no answer within the capture", "yellow"))


def _tls_answer(t: dict[str, Any]) -> str:
    tls = t.get("tls") or {}
    if tls.get("alert"):
        from analyzer.tlsinfo import alert_name

        return f"sent the alert {alert_name(tls['alert'][1])}"
    if tls.get("server_hello"):
        return "answered with a ServerHello"
    if t["server_rst"]:
        return "reset the connection"
    if t["server_fin"]:
        return "closed without answering"
    return "did not answer"


def _tls_line(h: dict[str, Any], console: Console) -> None:
    """One line of TLS facts (version, SNI, ALPN, leaf certificate) when the connection spoke TLS."""
    tls = h["transport"].get("tls") or {}
    if not tls.get("version") and not tls.get("offered_versions"):
        return
    parts = [tls.get("version") or "offered " + "/".join(tls.get("offered_versions") or [])]
    parts.append(f"SNI {tls['sni']}" if tls.get("sni") else "no SNI")
    if tls.get("alpn"):
        parts.append(f"ALPN {tls['alpn']}")
    if tls.get("decrypted"):
        parts.append("decrypted")
    elif tls.get("keys") == "missing":
        parts.append("no keys in the key log")
    certs = tls.get("certificates") or []
    if certs:
        c = certs[0]
        key = f"{c['key_type']} {c['key_bits']}"
        parts.append(f"cert {c['subject']} ({key}, until {str(c['not_after'])[:10]}; {len(certs)} sent)")
    elif tls.get("certificates_hidden"):
        parts.append("certificate encrypted (TLS 1.3)")
    console.print(Text("  tls: " + safe("; ".join(parts), 400), style="dim"))


def _frames(h: dict[str, Any], console: Console) -> None:
    for f in h["frames"][:12]:
        arrow = "→" if f["direction"] == "client" else "←"
        desc = f["opcode"]
        if f["opcode"] == "close":
            desc += (f" {f['close_code']}" if f.get("close_code") is not None else " (no code)") + (
                f" {safe(f['close_reason'], 80)!s}" if f.get("close_reason") else ""
            )
        elif "text" in f:
            desc += " " + safe(f["text"], 160)
        else:
            desc += f" {f['length']} bytes"
        flags = "".join(
            s
            for s, on in ((" masked", f["masked"]), (" compressed", f["rsv1"]), (" …", f["truncated"]))
            if on
        )
        console.print(
            Text(f"    {arrow} ws {desc}{flags}"), style="dim" if f["opcode"] in ("ping", "pong") else ""
        )


def _finding(f: dict[str, Any], console: Console, verdict: bool, verbose: bool = False) -> None:
    style = SEVERITY_STYLE.get(f["severity"], "")
    label = "CAUSE" if verdict else f["severity"]
    console.print(
        _line(
            f"  {'✗' if verdict else '•'} ",
            (f"{label}: {f['name']}", style),
            f" ({f['code']})  ",
            safe(f["message"], 400),
        )
    )
    if f["evidence"]:
        console.print(Text("      evidence: " + safe(f["evidence"], 300), style="dim"))
    if verdict or verbose:  # the verdict's fix is the one to act on; others on request (-v)
        console.print(_line("      ", ("fix: ", "bold"), safe(f["fix"], 600)))


def render_handshake(h: dict[str, Any], index: int, console: Console, verbose: bool) -> None:
    outcome = h["outcome"]
    status = f" {h['response']['status']}" if h["response"] else ""
    head = _line(
        (f"#{index} ", "bold"),
        f"{h['client']} → {h['server']}  ",
        (h["start"] or "", "dim"),
        "  ",
        (f"{outcome.upper()}{status}", OUTCOME_STYLE.get(outcome, "")),
        (f"  [tcp.stream eq {h['tcp_stream']}]", "dim"),
    )
    console.print(head)
    if h.get("tunnel"):
        console.print(Text(f"  through the proxy's CONNECT tunnel to {safe(h['tunnel'], 120)}", style="dim"))
    if h.get("upgrade") and h["upgrade"] != "websocket":
        console.print(Text(f"  (an HTTP upgrade to {safe(h['upgrade'], 40)}, not WebSocket)", style="dim"))
    req = h["request"]
    if req is not None:
        console.print(
            Text(f"  {safe(req['method'], 20)} {safe(req['target'], 300)} {safe(req['version'], 20)}")
        )
        for n, v in req["headers"][:MAX_HEADERS_SHOWN]:
            console.print(Text(f"    {safe(n, 80)}: {safe(v, 300)}", style="dim" if not verbose else ""))
        if len(req["headers"]) > MAX_HEADERS_SHOWN:
            console.print(Text(f"    … {len(req['headers']) - MAX_HEADERS_SHOWN} more headers", style="dim"))
    elif h["transport"]["client_payload"] == "tls":
        console.print(Text("  (the client sent TLS, not an HTTP request)", style="dim"))
    elif h["response"] is not None or h["transport"]["client_payload"] == "http":
        console.print(Text("  (request not captured: the capture began after it)", style="dim"))
    console.print(_answer(h))
    _tls_line(h, console)
    resp = h["response"]
    if resp is not None and resp["body"] and outcome != "upgraded":
        console.print(Text("    body: " + safe(resp["body"], BODY_PREVIEW), style="dim"))
    _frames(h, console)
    if h["cause"]:
        _finding(h["cause"], console, verdict=True)
    for f in h["findings"]:
        if verbose or f["severity"] != "info":
            _finding(f, console, verdict=False, verbose=verbose)
    t = h["transport"]
    if verbose and (t["client_bad_checksums"] or t["server_bad_checksums"]):
        console.print(
            Text(
                f"  TCP checksums wrong in {t['client_bad_checksums']} client and "
                f"{t['server_bad_checksums']} server segments: usual for packets the capturing host "
                "sent itself (checksum offload; loopback and veth never fill them in), else the "
                "packets were damaged and their receiver dropped them",
                style="dim",
            )
        )
    if h["anomalies"] and verbose:
        names = ", ".join(sorted({a["name"] for a in h["anomalies"]}))
        console.print(Text(f"  anomalies: {names}", style="dim"))
    if h["reproduce"] and (h["failed"] or verbose):
        console.print(Text("  reproduce: " + safe(h["reproduce"], 2000), style="dim"))
    console.print()


def render(
    doc: dict[str, Any],
    out: TextIO,
    counts: dict[str, list[int]],
    color: bool | None = None,
    verbose: bool = False,
) -> None:
    """The text report. `doc["handshakes"]` and `doc["ota"]` may be iterators (`tree.head` plus
    `tree.handshake_docs`/`tree.ota_docs`): each block is printed as it comes, so a big capture's
    report is never held whole. `counts` (`tree.input_counts`) fills the summary table, which
    counts every handshake even when only some are shown."""
    console = Console(
        file=out, force_terminal=color, no_color=color is False, highlight=False, soft_wrap=True, emoji=False
    )
    for i, h in enumerate(doc["handshakes"], 1):
        render_handshake(h, i, console, verbose)
    for o in doc["ota"]:
        render_ota(o, console, verbose)
    _summary(doc, counts, console)


def render_ota(o: dict[str, Any], console: Console, verbose: bool) -> None:
    """One OTA exchange (the device's check-in that hands out the WebSocket URL and token)."""
    req, resp = o["request"], o["response"]
    answer = f"{resp['status']} {safe(resp['reason'], 40)}" if resp else "no answer"
    console.print(
        _line(
            ("OTA ", "bold"),
            f"{o['client']} → {o['server']}  {safe(req['method'], 10)} "
            f"{safe(req['target'], 200)} → {answer}",
        )
    )
    if resp and resp["body"]:
        console.print(Text("    body: " + safe(resp["body"], BODY_PREVIEW), style="dim"))
    if o["cause"]:
        _finding(o["cause"], console, verdict=True)
    for f in o["findings"]:
        if verbose or f["severity"] != "info":
            _finding(f, console, verdict=False, verbose=verbose)
    console.print()


def _summary(doc: dict[str, Any], counts: dict[str, list[int]], console: Console) -> None:
    table = Table(title="wsdiag summary", title_justify="left", show_edge=False)
    for col in ("input", "packets", "connections", "handshakes", "failed", "notes"):
        table.add_column(col, overflow="fold")
    for inp in doc["inputs"]:
        handshakes, failed, otas = counts.get(inp["path"], [0, 0, 0])
        notes = inp["error"] or ", ".join(sorted({a["name"] for a in inp["anomalies"]})) or ""
        if otas:
            notes = f"{otas} OTA exchange(s)" + (f"; {notes}" if notes else "")
        table.add_row(
            Text(safe(inp["path"], 80)),
            str(inp["packets"]),
            str(inp["connections"]),
            str(handshakes),
            str(failed),
            Text(safe(notes, 120)),
        )
    console.print(table)
    causes = doc["summary"]["causes"]
    if causes:
        console.print(Text("causes: " + ", ".join(f"{k} ×{v}" for k, v in causes.items())))
    elif doc["summary"]["handshakes"] and not doc["summary"]["failed"]:
        console.print(Text("no failed handshake", style="green"))
    elif not doc["summary"]["handshakes"]:
        console.print(Text("no WebSocket handshake found in the input", style="yellow"))
    unread = sum(
        inp["tls_sessions"]
        for inp in doc["inputs"]
        if not any(a["name"] == "tls-decrypted" for a in inp["anomalies"])
    )
    if unread:
        console.print(
            Text(
                f"{unread} TLS session(s) (wss:// or https://) could not be read: without their keys the "
                "HTTP inside is encrypted, and a 403 or 401 in there stays invisible. Record the client's "
                "keys (SSLKEYLOGFILE=keys.log; Python: ssl.SSLContext.keylog_filename) and add --keylog "
                "keys.log, or capture between the TLS terminator and its backend.",
                style="dim",
            )
        )
