"""Two engines, one report model: ours (own reassembly) and Wireshark's (tshark), compared.

`analyze` is the single entry the CLI calls for a file: `engine` picks whose dissection builds
the handshakes, `keylog` adds decryption. `cross_check` runs both engines on a capture and lists
every handshake on which they disagree — its stream, request line and headers, answer status —
which is how we keep our reassembly honest against Wireshark's.
"""

from __future__ import annotations

from collections.abc import Sequence

from analyzer.config import Config
from analyzer.limits import DEFAULT_LIMITS, Limits
from analyzer.model import Handshake, InputSummary, Report

ENGINES = ("wsdiag", "tshark")


def analyze(
    path: str,
    config: Config | None = None,
    limits: Limits = DEFAULT_LIMITS,
    engine: str = "wsdiag",
    keylog: str | None = None,
) -> Report:
    """One capture → one Report, by the chosen engine; never raises for bad input."""
    from analyzer.run import analyze_path, report_from

    config = config or Config()
    from analyzer.sources.tshark import tshark_path
    from analyzer.tls.keylog import has_embedded_keys

    if engine == "wsdiag" and keylog is None and not (has_embedded_keys(path) and tshark_path()):
        return analyze_path(path, config, limits)
    summary = InputSummary(path)
    if engine == "tshark":
        from analyzer.sources import tshark

        try:
            harvest = tshark.harvest(path, summary, limits, keylog)
        except tshark.TsharkFailed as e:
            summary.error, summary.readable_to_end = str(e), False
            from analyzer.pipeline import Harvest

            harvest = Harvest()
    else:
        from analyzer.tls.decrypt import harvest as decrypt_harvest

        harvest = decrypt_harvest(path, summary, limits, keylog)
    report = report_from(summary, harvest, config)
    report.engine = engine
    return report


def _key(h: Handshake) -> tuple[int, int]:
    return h.tcp_stream, h.request.frames[-1] if h.request and h.request.frames else 0


def _request_view(h: Handshake) -> tuple[str, ...] | None:
    r = h.request
    if r is None:
        return None
    return (r.method, r.target, r.version, *(f"{n}: {v}" for n, v in r.headers))


def compare(ours: Sequence[Handshake], theirs: Sequence[Handshake]) -> list[str]:
    """Every difference on upgrade requests: missing on one side, request line, headers, status.

    Handshakes are matched by TCP stream and the order of requests in it (tshark numbers frames
    and streams as we do). Handshakes without a request (TLS or TCP failures) are compared by
    stream only. Wireshark shows a header value with control bytes escaped, so header values are
    compared after the same escaping.
    """
    out: list[str] = []
    mine = _by_stream(ours)
    other = _by_stream(theirs)
    for stream in sorted(mine.keys() | other.keys()):
        a, b = mine.get(stream, []), other.get(stream, [])
        for i in range(max(len(a), len(b))):
            ha = a[i] if i < len(a) else None
            hb = b[i] if i < len(b) else None
            where = f"tcp.stream {stream}" + (f" request {i + 1}" if max(len(a), len(b)) > 1 else "")
            if ha is None or hb is None:
                only = "wsdiag" if hb is None else "tshark"
                h = ha or hb
                assert h is not None
                what = f"{h.request.method} {h.request.target}" if h.request else f"no request ({h.outcome})"
                out.append(f"{where}: only {only} found this handshake: {what}")
                continue
            # tshark reads what follows `200 Connection established` as tunnel bytes, not HTTP
            note = " (tshark does not dissect HTTP inside a CONNECT tunnel)" if ha.tunnel else ""
            out += [f"{where}: {d}{note}" for d in _differences(ha, hb)]
    return out


def _by_stream(hs: Sequence[Handshake]) -> dict[int, list[Handshake]]:
    out: dict[int, list[Handshake]] = {}
    for h in hs:
        out.setdefault(h.tcp_stream, []).append(h)
    for v in out.values():
        v.sort(key=_key)
    return out


def _esc(s: str) -> str:
    return "".join(c if 0x20 <= ord(c) < 0x7F else f"\\x{ord(c):02x}" for c in s)


def _differences(a: Handshake, b: Handshake) -> list[str]:
    diffs = []
    if (a.client, a.server) != (b.client, b.server):
        diffs.append(f"endpoints {a.client}→{a.server} vs {b.client}→{b.server}")
    ra, rb = a.request, b.request
    if (ra is None) != (rb is None):
        only = "wsdiag" if rb is None else "tshark"
        diffs.append(f"request found only by {only}")
    elif ra is not None and rb is not None:
        for name, x, y in (
            ("method", ra.method, rb.method),
            ("target", ra.target, rb.target),
            ("version", ra.version, rb.version),
        ):
            if _esc(x) != _esc(y):
                diffs.append(f"{name} {x!r} vs {y!r}")
        ha = [(n, _esc(v)) for n, v in ra.headers]
        hb = [(n, _esc(v)) for n, v in rb.headers]
        if ha != hb:
            diffs.append(f"headers differ: wsdiag {_hdiff(ha, hb)}; tshark {_hdiff(hb, ha)}")
    sa = a.response.status if a.response else None
    sb = b.response.status if b.response else None
    if sa != sb:
        diffs.append(f"status {sa} vs {sb}")
    return diffs


def _hdiff(x: list[tuple[str, str]], y: list[tuple[str, str]]) -> str:
    extra = [f"{n}: {v}"[:80] for n, v in x if (n, v) not in y]
    if not extra:
        return "same headers, other order" if sorted(x) == sorted(y) else "duplicates differ"
    return "has " + "; ".join(extra[:5])


def cross_check(
    path: str, config: Config | None = None, limits: Limits = DEFAULT_LIMITS, keylog: str | None = None
) -> tuple[Report, list[str]]:
    """Our report for `path`, and the disagreements with tshark's on the same capture."""
    ours = analyze(path, config, limits, "wsdiag", keylog)
    theirs = analyze(path, config, limits, "tshark", keylog)
    if theirs.input.error:
        return ours, [f"tshark engine: {theirs.input.error}"]
    diffs = compare([d.handshake for d in ours.diagnoses], [d.handshake for d in theirs.diagnoses])
    ours.cross_check = tuple(diffs)
    return ours, diffs
