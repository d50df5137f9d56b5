"""The command line: a thin shell that opens inputs, runs the pipeline and picks a reporter.

Exit codes (also in `--help`): 0 no failed handshake, 1 at least one failed, 2 an input could not
be read (or bad usage), 130 interrupted. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import enum
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from analyzer import __version__
from analyzer.errors import WsdiagError

if TYPE_CHECKING:  # imported on use: `wsdiag rules` needs no report code
    from analyzer.report.select import Selection

EXIT_OK, EXIT_FAILED, EXIT_UNREADABLE, EXIT_INTERRUPTED = 0, 1, 2, 130
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp", ".pcap.gz", ".pcapng.gz", ".gz")

app = typer.Typer(
    name="wsdiag",
    help=(
        "Find out why a WebSocket connection was refused (403, 400, 401, 404, 426, a reset, or"
        " silence), from a packet capture or live traffic. Built for ESP32 devices on the xiaozhi"
        " firmware and xiaozhi-esp32-server, and for any WebSocket client and server."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Format(enum.StrEnum):
    text = "text"
    json = "json"
    jsonl = "jsonl"


class Color(enum.StrEnum):
    auto = "auto"
    always = "always"
    never = "never"


class Engine(enum.StrEnum):
    wsdiag = "wsdiag"
    tshark = "tshark"


class Profile(enum.StrEnum):
    auto = "auto"
    xiaozhi = "xiaozhi"
    rfc6455 = "rfc6455"


def fail(message: str, code: int = EXIT_UNREADABLE) -> typer.Exit:
    from analyzer.textsafe import safe

    print(f"wsdiag: error: {safe(message)}", file=sys.stderr)
    return typer.Exit(code)


def expand_inputs(inputs: list[str]) -> list[str]:
    """Directories stand for the capture files in them and below (rotated captures often sit in
    dated folders), in path order; links to directories are not followed."""
    out: list[str] = []
    for item in inputs:
        p = Path(item)
        if item != "-" and p.is_fifo():  # opening a FIFO blocks until someone writes to it
            print(f"wsdiag: waiting for a writer on the FIFO {item} (Ctrl-C to stop)", file=sys.stderr)
        if item != "-" and p.is_dir():
            found = sorted(
                os.path.join(root, name)
                for root, _dirs, files in os.walk(p)
                for name in files
                if name.lower().endswith(CAPTURE_SUFFIXES) and os.path.isfile(os.path.join(root, name))
            )
            if not found:
                raise fail(f"{item}: directory holds no capture files (*.pcap, *.pcapng, *.gz)")
            out += found
        else:
            out.append(item)
    return out


def build_config(
    profile: Profile,
    expect_path: str | None,
    expect_port: int | None,
    auth_key: str | None,
    server_config: Path | None,
    select: list[str] | None,
    ignore: list[str] | None,
) -> Any:
    from analyzer.config import Config, load_server_config

    split = lambda xs: tuple(x.strip() for v in (xs or []) for x in v.split(",") if x.strip())  # noqa: E731
    config = Config(
        profile=str(profile),
        expect_path=expect_path,
        expect_port=expect_port,
        auth_key=auth_key,
        select=split(select),
        ignore=split(ignore),
    )
    if server_config is not None:
        config = load_server_config(str(server_config), config)
    return config


def write_report(
    reports: list[Any],
    fmt: Format,
    show_secrets: bool,
    color: Color,
    verbose: bool,
    selection: Selection | None = None,
) -> None:
    from analyzer.report import tree  # the text renderer (rich) is imported only for text
    from analyzer.report.select import EVERYTHING
    from analyzer.textsafe import json_text

    selection = selection or EVERYTHING
    out = sys.stdout
    # every format is written one handshake at a time: a big capture's report is never whole in
    # memory; every JSON string is escaped (C1, bidi, U+2028) by json_text: safe to `cat`
    if fmt is Format.json:
        indent = 2 if out.isatty() else None  # pretty for people; compact (and 3x faster) in files
        out.writelines(tree.json_chunks(reports, show_secrets, indent, selection))
        out.write("\n")
    elif fmt is Format.jsonl:
        for h in tree.handshake_docs(reports, show_secrets, selection):
            out.write(json_text({"kind": "handshake", **h}) + "\n")
        for o in tree.ota_docs(reports, show_secrets, selection):
            out.write(json_text({"kind": "ota", **o}) + "\n")
    else:
        from analyzer.report import terminal

        use_color = {Color.always: True, Color.never: False}.get(color)
        if use_color is None and os.environ.get("NO_COLOR"):
            use_color = False
        doc = {
            **tree.head(reports, show_secrets),
            "handshakes": tree.handshake_docs(reports, show_secrets, selection),
            "ota": tree.ota_docs(reports, show_secrets, selection),
        }
        terminal.render(doc, out, tree.input_counts(reports), color=use_color, verbose=verbose)
    out.flush()


def input_problems(reports: list[Any]) -> bool:
    """Says on stderr, one line each, which inputs could not be read through; True if any."""
    from analyzer.textsafe import safe

    bad = False
    for r in reports:
        s = r.input
        if s.error:
            print(f"wsdiag: error: {safe(s.error)}", file=sys.stderr)
            bad = True
        elif not s.readable_to_end:
            damage = next(
                (a for a in s.anomalies if a.name.startswith("capture-") or a.name == "interrupted"), None
            )
            what = f"{damage.name}: {damage.detail}" if damage else "not read to the end"
            print(
                f"wsdiag: warning: {safe(s.path)}: {safe(what)}; report covers what was read", file=sys.stderr
            )
            bad = True
    return bad


@app.command()
def analyze(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Capture files (pcap, pcapng, .gz), directories of them (searched down), or - for stdin.",
            metavar="CAPTURE...",
        ),
    ],
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            "-f",
            help="text for people; json (one document) or jsonl (one handshake per line) for scripts.",
        ),
    ] = Format.text,
    show_secrets: Annotated[
        bool,
        typer.Option(
            "--show-secrets", help="Show tokens, Authorization values and cookies instead of redacting them."
        ),
    ] = False,
    profile: Annotated[
        Profile,
        typer.Option(
            help="Which server contract to check: auto detects xiaozhi traffic; rfc6455 checks only the standard."
        ),
    ] = Profile.auto,
    expect_path: Annotated[
        str | None, typer.Option(help="The path your server serves WebSockets on, e.g. /xiaozhi/v1/.")
    ] = None,
    expect_port: Annotated[
        int | None,
        typer.Option(
            help="The port your WebSocket server listens on; silent failures to it are reported too."
        ),
    ] = None,
    auth_key: Annotated[
        str | None,
        typer.Option(
            envvar="WSDIAG_AUTH_KEY",
            help="The xiaozhi server's auth key (server.auth_key / manager-api server.secret) to verify tokens offline. Prefer the WSDIAG_AUTH_KEY variable.",
        ),
    ] = None,
    server_config: Annotated[
        Path | None,
        typer.Option(
            help="xiaozhi-esp32-server config.yaml: auth switch, allowed devices, key, websocket URL."
        ),
    ] = None,
    select: Annotated[
        list[str] | None,
        typer.Option(
            help="Only these rules (code prefixes like WS1, or names); repeatable or comma-separated."
        ),
    ] = None,
    ignore: Annotated[
        list[str] | None, typer.Option(help="Skip these rules (code prefixes or names).")
    ] = None,
    color: Annotated[Color, typer.Option(help="Colour in the text report.")] = Color.auto,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show every header, finding and anomaly.")
    ] = False,
    failed: Annotated[
        bool,
        typer.Option(
            "--failed", help="Show only failed handshakes and OTA checks (the summary still counts all)."
        ),
    ] = False,
    client: Annotated[
        list[str] | None,
        typer.Option(
            help="Show only this device's attempts: its IP address, MAC or Device-Id; repeatable. "
            "The exit code then speaks for these alone.",
            metavar="IP|MAC|DEVICE-ID",
        ),
    ] = None,
    max_flows: Annotated[
        int,
        typer.Option(
            help="Most TCP connections tracked at once; the idlest are closed early past this.", min=16
        ),
    ] = 65_536,
    idle_timeout: Annotated[
        float, typer.Option(help="Seconds of capture time after which a quiet connection is closed.", min=1)
    ] = 300.0,
    limit: Annotated[
        list[str] | None,
        typer.Option(
            help="Change one bound, NAME=VALUE, repeatable: max_head_bytes (65536), max_headers (1000), "
            "max_body_bytes, max_ooo_bytes (per direction), max_ooo_segments, max_frames, "
            "max_frame_payload, max_inflate_bytes, syn_timeout_s, max_anomaly_samples, "
            "max_record_bytes, max_block_bytes, max_handshakes (10000 kept for the report). "
            "Hitting a bound is a named anomaly.",
            metavar="NAME=VALUE",
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", help="Capture files analysed in parallel (worker processes).", min=1)
    ] = 1,
    keylog: Annotated[
        Path | None,
        typer.Option(
            help="TLS key log (NSS format, as written by SSLKEYLOGFILE) to decrypt wss:// with tshark; keys embedded in a pcapng are used without it. Keys are never printed."
        ),
    ] = None,
    engine: Annotated[
        Engine,
        typer.Option(help="wsdiag: own TCP reassembly and HTTP reader; tshark: Wireshark's dissection (needs tshark)."),
    ] = Engine.wsdiag,
    cross_check: Annotated[
        bool,
        typer.Option("--cross-check", help="Run both engines and list every handshake they disagree on (needs tshark)."),
    ] = False,
) -> None:
    """Diagnose every WebSocket handshake in capture files.

    For each upgrade attempt: the request as sent (secrets redacted), the answer or what happened
    instead, the first WebSocket frames, and the most likely cause with its fix.

    Exit codes: 0 no failed handshake; 1 at least one failed; 2 an input could not be read
    (the report still covers what was read); 130 interrupted.

    Examples:

      wsdiag analyze capture.pcapng

      wsdiag analyze big.pcap.gz --format json > report.json

      tcpdump -i eth0 -w - port 8000 | wsdiag analyze -

      wsdiag analyze wss.pcapng --keylog sslkeys.log

      wsdiag analyze day.pcap --failed --client a0:b7:65:12:34:56
    """
    from analyzer.limits import build_limits
    from analyzer.model import Diagnosis
    from analyzer.report.select import Selection
    from analyzer.run import analyze_paths

    selection = Selection(failed, tuple(client or ()))
    try:
        config = build_config(profile, expect_path, expect_port, auth_key, server_config, select, ignore)
        limits = build_limits(max_flows, idle_timeout, limit)
        paths = expand_inputs(inputs)
        if _tshark_options(keylog, engine, cross_check, paths):
            reports, interrupted = _tls_reports(paths, config, limits, keylog, engine, cross_check)
        else:
            reports, interrupted = analyze_paths(paths, config, limits, jobs, sys.stderr.isatty())
        if fmt is not Format.text or not all(r.input.error for r in reports):
            write_report(reports, fmt, show_secrets, color, verbose, selection)  # nothing read: the error says it
    except WsdiagError as e:
        raise fail(str(e)) from None
    except BrokenPipeError:
        _quiet_broken_pipe()
        raise typer.Exit(EXIT_OK) from None
    unreadable = input_problems(reports)
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)
    if unreadable:
        raise typer.Exit(EXIT_UNREADABLE)
    shown = [
        x
        for r in reports
        for x in r.failed
        if (selection.keep(x) if isinstance(x, Diagnosis) else selection.keep_ota(x))
    ]
    raise typer.Exit(EXIT_FAILED if shown else EXIT_OK)


def _tshark_options(keylog: Path | None, engine: Engine, cross_check: bool, paths: list[str]) -> bool:
    """Checks the TLS/tshark options (one line when tshark or the key log is missing); True when
    they ask for tshark: a key log, keys embedded in a pcapng, the tshark engine, a cross-check."""
    from analyzer.tls.keylog import has_embedded_keys, read_keylog

    wants = engine is Engine.tshark or cross_check
    if not wants and keylog is None and not any(map(has_embedded_keys, paths)):
        return False  # the common case decides without importing pyshark
    from analyzer.sources.tshark import INSTALL_HINT, tshark_path

    if keylog is not None:
        read_keylog(str(keylog))  # raises UsageError naming the problem, never a secret
    if wants and tshark_path() is None:
        raise fail(INSTALL_HINT)
    if (wants or keylog is not None) and "-" in paths:
        raise fail("--keylog, --engine tshark and --cross-check need capture files, not stdin")
    if keylog is not None and tshark_path() is None:
        print(f"wsdiag: warning: not decrypting: {INSTALL_HINT}", file=sys.stderr)
    return wants or keylog is not None or tshark_path() is not None


def _tls_reports(
    paths: list[str], config: Any, limits: Any, keylog: Path | None, engine: Engine, cross_check: bool
) -> tuple[list[Any], bool]:
    """One file after another through `analyzer.crosscheck` (decryption, tshark engine, both)."""
    from analyzer.crosscheck import analyze
    from analyzer.crosscheck import cross_check as run_cross_check
    from analyzer.textsafe import safe

    key = str(keylog) if keylog is not None else None
    reports = []
    try:
        for path in paths:
            if cross_check:
                report, diffs = run_cross_check(path, config, limits, key)
                for d in diffs or ["engines agree on every handshake"]:
                    print(f"wsdiag: cross-check: {safe(path)}: {safe(d)}", file=sys.stderr)
            else:
                report = analyze(path, config, limits, str(engine), key)
            reports.append(report)
    except KeyboardInterrupt:
        return reports, True
    return reports, False


def _quiet_broken_pipe() -> None:
    """The reader went away (`| head`): stop writing without a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except OSError:
        pass


@app.command("rules")
def list_rules(
    fmt: Annotated[Format, typer.Option("--format", "-f", help="text table or json.")] = Format.text,
) -> None:
    """List every rule: code, cause name, severity and what it means."""
    from analyzer.rules import RULES

    if fmt is not Format.text:
        rows = [
            {"code": r.code, "name": r.name, "severity": str(r.severity), "title": r.title, "fix": r.fix}
            for r in RULES
        ]
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False)
    for col in ("code", "name", "severity", "title"):
        table.add_column(col)
    for r in RULES:
        table.add_row(r.code, r.name, str(r.severity), r.title)
    Console(highlight=False).print(table)


@app.command()
def explain(
    rule: Annotated[str, typer.Argument(help="A rule code (WS101) or cause name (missing-token).")],
) -> None:
    """Print one rule's documentation: what it checks, why it is refused, an example and the fix."""
    from analyzer.rules import RULES, find_rule

    found = find_rule(rule)
    if found is None:
        names = ", ".join(r.name for r in RULES[:6])
        raise fail(f"no rule {rule!r}; `wsdiag rules` lists them (e.g. {names}, …)")
    print(f"{found.code} {found.name} ({found.severity})\n{found.title}\n")
    print(found.doc)
    print(f"\nFix: {found.fix}")


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        print(f"wsdiag {__version__}")
        raise typer.Exit(EXIT_OK)


from analyzer.live_cli import register as register_live  # noqa: E402  (live/interfaces commands)

register_live(app)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("wsdiag: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:
        _quiet_broken_pipe()
        sys.exit(EXIT_OK)
