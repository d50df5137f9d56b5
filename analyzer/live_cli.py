"""`wsdiag live` and `wsdiag interfaces`: the command-line side of live capture.

Registered on the main Typer app by `register(app)` (called at the end of `cli.py`). The order of
work is the one reliability.md §3.6 asks for: parse the arguments, open the capture socket, drop
privileges and verify the drop, and only then open the `--write` file and parse captured bytes.
"""

import contextlib
import enum
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import RenderableType

    from analyzer.sources.live import LiveSession, Stop

EXIT_SIGTERM = 143
PRELOAD = (
    "encodings.idna", "encodings.latin_1", "encodings.utf_8", "rich.box", "rich.console", "rich.live",
    "rich.table", "rich.text", "rich.markup", "analyzer.report.terminal", "analyzer.report.tree",
    "analyzer.rules", "analyzer.reproduce", "analyzer.textsafe", "encodings.ascii", "zlib",
)
STOP_REASONS = ("SIGINT", "SIGTERM", "count", "duration")


class LiveFormat(enum.StrEnum):
    text = "text"
    jsonl = "jsonl"


class ListFormat(enum.StrEnum):
    text = "text"
    json = "json"


LIVE_HELP = """Watch WebSocket handshakes on a network interface as they happen, and say why each failed.

Each attempt is reported as soon as its answer has settled (or the connection ended): the same
verdicts, rules and redaction as `wsdiag analyze`. Clients are listed with IP, MAC, the Device-Id
they claim, attempts and outcomes; Espressif (ESP32) devices are recognised by their MAC prefix.
The devices must be on the same link as the capture point for their MAC to be seen.

Privilege: capturing needs root or CAP_NET_RAW. Started as root (sudo), wsdiag drops to --user
(default: the user who ran sudo) once the socket is open, before reading any packet or opening
the --write file. Without sudo, give the interpreter the capability once:
sudo setcap cap_net_raw,cap_net_admin=eip $(readlink -f $(which python3))
(prefer a virtualenv's own copy of python to the system one); all capabilities are then cleared
once the socket is open.

Stopping: --duration and --count stop by themselves; Ctrl-C (SIGINT) or SIGTERM stop cleanly:
the --write file is completed (per-packet writes; a hard kill loses at most the last packet),
remaining connections are reported, and the summary is printed.

Exit codes: 0 no failed handshake; 1 at least one failed; 2 capture could not start or broke
(no privilege, no such interface, bad filter, interface went down, disk full); 130 stopped by
SIGINT (Ctrl-C); 143 stopped by SIGTERM.

Examples:

  sudo wsdiag live -i wlan0

  sudo wsdiag live -i eth0 --port 8000 --esp32

  sudo wsdiag live -i eth0 --write session.pcapng --duration 120

  sudo wsdiag live -i eth0 --format jsonl | jq .cause.name
"""


def register(app: typer.Typer) -> None:
    """Adds `live` and `interfaces` to the wsdiag app."""
    from analyzer.cli import Color, Profile

    @app.command("live", help=LIVE_HELP)
    def live(
        interface: Annotated[
            str,
            typer.Option(
                "--interface", "-i",
                help=(
                    "Interface to capture on (see `wsdiag interfaces`); `any` captures on all of "
                    "them at once (written as Linux cooked records, as tcpdump -i any does)."
                ),
            ),
        ],
        port: Annotated[
            list[int] | None,
            typer.Option(
                "--port", "-p",
                help=(
                    "Only TCP traffic on this port; repeatable."
                ),
                min=1, max=65535,
            ),
        ] = None,
        host: Annotated[str | None, typer.Option(help="Only traffic to or from this address.")] = None,
        bpf: Annotated[
            str | None,
            typer.Option(
                "--filter",
                help=(
                    "A BPF expression (tcpdump syntax) used instead of the one --port/--host build "
                    "(default: tcp)."
                ),
            ),
        ] = None,
        esp32: Annotated[
            bool,
            typer.Option(
                "--esp32",
                help=(
                    "Only report handshakes from Espressif (ESP32/ESP8266) MAC addresses."
                ),
            ),
        ] = False,
        write: Annotated[
            Path | None,
            typer.Option(
                "--write", "-w",
                help=(
                    "Save every captured packet to this pcapng file (mode 0600; raw: secrets are NOT "
                    "redacted)."
                ),
            ),
        ] = None,
        duration: Annotated[float | None, typer.Option(help="Stop after this many seconds.", min=0.1)] = None,
        count: Annotated[
            int | None,
            typer.Option(
                "--count", "-c",
                help=(
                    "Stop after this many captured packets."
                ),
                min=1,
            ),
        ] = None,
        fmt: Annotated[
            LiveFormat,
            typer.Option(
                "--format", "-f",
                help=(
                    "text for people; jsonl: one handshake object per line on stdout (the summary "
                    "goes to stderr)."
                ),
            ),
        ] = LiveFormat.text,
        show_secrets: Annotated[
            bool,
            typer.Option(
                "--show-secrets",
                help=(
                    "Show tokens, Authorization values and cookies instead of redacting them."
                ),
            ),
        ] = False,
        user: Annotated[
            str | None,
            typer.Option(
                help=(
                    "When started as root: the user to become once the socket is open (default "
                    "$SUDO_USER; `root` keeps root)."
                ),
            ),
        ] = None,
        promisc: Annotated[
            bool,
            typer.Option(
                "--promisc/--no-promisc",
                help=(
                    "Put the interface in promiscuous mode to see other hosts' traffic."
                ),
            ),
        ] = True,
        profile: Annotated[
            Profile,
            typer.Option(
                help=(
                    "Which server contract to check: auto detects xiaozhi traffic; rfc6455 checks "
                    "only the standard."
                ),
            ),
        ] = Profile.auto,
        expect_path: Annotated[
            str | None,
            typer.Option(
                help=(
                    "The path your server serves WebSockets on, e.g. /xiaozhi/v1/."
                ),
            ),
        ] = None,
        expect_port: Annotated[
            int | None,
            typer.Option(
                help=(
                    "The port your WebSocket server listens on; silent failures to it are reported "
                    "too."
                ),
            ),
        ] = None,
        auth_key: Annotated[
            str | None,
            typer.Option(
                envvar="WSDIAG_AUTH_KEY",
                help=(
                    "The xiaozhi server's auth key to verify tokens offline. Prefer the "
                    "WSDIAG_AUTH_KEY variable."
                ),
            ),
        ] = None,
        server_config: Annotated[
            Path | None,
            typer.Option(
                help=(
                    "xiaozhi-esp32-server config.yaml: auth switch, allowed devices, key, websocket "
                    "URL."
                ),
            ),
        ] = None,
        select: Annotated[
            list[str] | None,
            typer.Option(
                help=(
                    "Only these rules (code prefixes like WS1, or names); repeatable or "
                    "comma-separated."
                ),
            ),
        ] = None,
        ignore: Annotated[
            list[str] | None,
            typer.Option(
                help=(
                    "Skip these rules (code prefixes or names)."
                ),
            ),
        ] = None,
        color: Annotated[Color, typer.Option(help="Colour in the text report.")] = Color.auto,
        verbose: Annotated[
            bool,
            typer.Option(
                "--verbose", "-v",
                help=(
                    "Show every header, finding and anomaly."
                ),
            ),
        ] = False,
        max_flows: Annotated[
            int,
            typer.Option(
                help=(
                    "Most TCP connections tracked at once; the idlest are closed early past this."
                ),
                min=16,
            ),
        ] = 65_536,
        idle_timeout: Annotated[
            float,
            typer.Option(
                help=(
                    "Seconds without a packet after which a connection is closed and reported."
                ),
                min=1,
            ),
        ] = 300.0,
        limit: Annotated[
            list[str] | None,
            typer.Option(
                help="Change one bound, NAME=VALUE, repeatable (the names `wsdiag analyze --help` lists).",
                metavar="NAME=VALUE",
            ),
        ] = None,
    ) -> None:
        code = run_live(
            interface=interface, ports=port or [], host=host, bpf=bpf, esp32=esp32, write=write,
            duration=duration, count=count, fmt=fmt, show_secrets=show_secrets, user=user, promisc=promisc,
            config_args=(profile, expect_path, expect_port, auth_key, server_config, select, ignore),
            color=str(color), verbose=verbose, max_flows=max_flows, idle_timeout=idle_timeout,
            limit=limit,
        )
        raise typer.Exit(code)

    @app.command("interfaces")
    def list_interfaces(
        fmt: Annotated[ListFormat, typer.Option("--format", "-f", help="text table or json.")] = (
            ListFormat.text
        ),
    ) -> None:
        """List the interfaces `wsdiag live -i` can capture on, with their addresses and MAC vendor."""
        from analyzer.privileges import can_open_packet_socket
        from analyzer.sources.live import LINKTYPE_OF_ARPHRD, interfaces

        found = interfaces()
        allowed = can_open_packet_socket()
        if fmt is ListFormat.json:
            rows = [
                {
                    "name": i.name, "index": i.index, "state": i.state, "mac": i.mac, "vendor": i.vendor,
                    "addresses": i.addresses, "capturable": i.kind is None or i.kind in LINKTYPE_OF_ARPHRD,
                }
                for i in found
            ]
            print(json.dumps({"interfaces": rows, "can_capture": allowed}, indent=2))
            return
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        from analyzer.textsafe import safe

        table = Table(show_edge=False)
        for col in ("interface", "state", "mac", "vendor", "addresses"):
            table.add_column(col)
        for i in found:
            capturable = i.kind is None or i.kind in LINKTYPE_OF_ARPHRD
            name = i.name + ("" if capturable else " (unsupported type)")
            table.add_row(Text(safe(name)), i.state, i.mac or "", Text(safe(i.vendor or "")),
                          Text(" ".join(i.addresses)))
        table.add_row("any", "", "", "", Text("every interface above at once (cooked records)"))
        console = Console(highlight=False, soft_wrap=True)
        console.print(table)
        if not allowed:
            from analyzer.privileges import NEED_PRIVILEGE

            print(f"note: {NEED_PRIVILEGE}", file=sys.stderr)


def _preload() -> None:
    """Imports everything the capture will need while the files are still readable.

    After a drop to another user, a lazy import from a private install (e.g. under /root) fails.
    """
    import importlib

    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from analyzer.oui import database

    database()


def _warm_up(linktype: int) -> None:
    """Decodes a dummy frame so that link layers decoded by scapy import their modules before the drop."""
    from analyzer.sources.decode import decode

    with contextlib.suppress(Exception):
        decode(linktype, bytes(64), 0, 0, None)


def run_live(
    *,
    interface: str,
    ports: list[int],
    host: str | None,
    bpf: str | None,
    esp32: bool,
    write: Path | None,
    duration: float | None,
    count: int | None,
    fmt: LiveFormat,
    show_secrets: bool,
    user: str | None,
    promisc: bool,
    config_args: tuple[Any, ...],
    color: str,
    verbose: bool,
    max_flows: int,
    idle_timeout: float,
    limit: list[str] | None = None,
) -> int:
    from analyzer.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_UNREADABLE, build_config, fail
    from analyzer.errors import WsdiagError
    from analyzer.limits import build_limits
    from analyzer.privileges import drop, resolve_user
    from analyzer.sources.live import LiveSession, LiveSource, Stop, build_filter, run
    from analyzer.sources.pcapng_writer import PcapngWriter

    logging.getLogger("scapy").setLevel(logging.ERROR)
    try:
        config = build_config(*config_args)
        limits = build_limits(max_flows, idle_timeout, limit)
        target = resolve_user(user)
        _preload()
        source = LiveSource(interface, build_filter(ports, host, bpf), promisc)
    except WsdiagError as e:
        raise fail(str(e)) from None
    writer: PcapngWriter | None = None
    try:
        _warm_up(source.linktype)
        dropped_how = drop(target)
        if write is not None:
            try:
                writer = PcapngWriter(str(write), source.linktype, interface)
            except OSError as e:
                raise fail(f"cannot write {write}: {e.strerror or e}") from None
    except WsdiagError as e:
        source.close()
        raise fail(str(e)) from None
    except typer.Exit:
        source.close()
        raise

    out = Output(fmt, color, verbose)
    session = LiveSession(
        f"live:{interface}", config, limits, out.emit, tuple(ports), esp32, show_secrets
    )
    out.session = session
    stop = Stop()
    previous = _install_signals(stop)
    print(f"wsdiag: listening on {interface} (filter: {source.bpf}); {dropped_how};"
          f"{f' writing {write};' if write else ''} Ctrl-C to stop", file=sys.stderr, flush=True)
    started = time.monotonic()
    try:
        out.start()
        try:
            run(source, session, stop, writer, duration, count, on_tick=out.tick)
        except BrokenPipeError:
            stop.reason = "pipe"
        try:
            session.finish()
        except BrokenPipeError:
            stop.reason = "pipe"
    finally:
        _restore_signals(previous)
        stats = source.stats()
        source.close()
        if writer is not None:
            try:
                writer.close(*(stats or (None, None)))
            except OSError as e:
                stop.reason, stop.error = "error", f"cannot finish {write}: {e.strerror or e}"
        out.stop()
    if stop.reason == "pipe":
        from analyzer.cli import _quiet_broken_pipe

        _quiet_broken_pipe()
    try:
        out.summary(session, stats, time.monotonic() - started, interface, writer, stop)
    except BrokenPipeError:
        from analyzer.cli import _quiet_broken_pipe

        _quiet_broken_pipe()
    if stop.error:
        from analyzer.textsafe import safe

        print(f"wsdiag: error: {safe(stop.error)}", file=sys.stderr)
        return EXIT_UNREADABLE
    if stop.reason == "SIGINT":
        return EXIT_INTERRUPTED
    if stop.reason == "SIGTERM":
        return EXIT_SIGTERM
    return EXIT_FAILED if session.failed or session.ota_failed else EXIT_OK


SignalHandler = Any


def _install_signals(stop: "Stop") -> dict[int, SignalHandler]:
    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C while finishing: give up at once
        stop.reason = "SIGINT" if signum == signal.SIGINT else "SIGTERM"

    previous: dict[int, SignalHandler] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_signals(previous: dict[int, SignalHandler]) -> None:
    for sig, h in previous.items():
        signal.signal(sig, h)


class Output:
    """Where handshakes and the summary go: text blocks (with a live device table on a terminal) or JSONL."""

    def __init__(self, fmt: LiveFormat, color: str, verbose: bool) -> None:
        from rich.console import Console

        self.fmt = fmt
        self.verbose = verbose
        use_color = {"always": True, "never": False}.get(color)
        if use_color is None and os.environ.get("NO_COLOR"):
            use_color = False
        self.console = Console(file=sys.stdout, force_terminal=use_color, no_color=use_color is False,
                               highlight=False, soft_wrap=True, emoji=False)
        self.err_console = Console(file=sys.stderr, force_terminal=use_color, no_color=use_color is False,
                                   highlight=False, soft_wrap=True, emoji=False)
        for c in (self.console, self.err_console):
            if not c.is_terminal:
                c.width = max(c.width, 160)  # a file or a pipe: don't squeeze the device table to 80 columns
        self.index = 0
        self.session: LiveSession | None = None
        self._live: Any = None

    def start(self) -> None:
        if self.fmt is LiveFormat.text and self.console.is_terminal:
            from rich.live import Live

            self._live = Live(get_renderable=self._table, console=self.console, auto_refresh=False,
                              transient=True, redirect_stdout=False, redirect_stderr=False)
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def tick(self) -> None:
        if self._live is not None:
            self._live.refresh()

    def emit(self, obj: dict[str, Any]) -> None:
        """A handshake or an OTA exchange (`kind`), as soon as the session has diagnosed it."""
        if self.fmt is LiveFormat.jsonl:
            from analyzer.textsafe import json_text

            sys.stdout.write(json_text(obj) + "\n")  # C1/bidi/U+2028 escaped: one line, safe to `cat`
            sys.stdout.flush()
            return
        from analyzer.report.terminal import render_handshake, render_ota

        if obj["kind"] == "ota":
            render_ota(obj, self.console, self.verbose)
        else:
            self.index += 1
            render_handshake(obj, self.index, self.console, self.verbose)
        self.console.file.flush()
        self.tick()

    def _table(self) -> "RenderableType":
        from rich.table import Table
        from rich.text import Text

        from analyzer.textsafe import safe

        table = Table(title="devices", title_justify="left", show_edge=False)
        columns = ("client", "mac", "vendor", "device-id", "attempts", "ota", "upgraded", "failed", "causes")
        for col in columns:
            table.add_column(col)
        if self.session is None:
            return table
        for d in self.session.devices.listed(self.session.esp32_only):
            vendor = ("ESP32 " if d.espressif else "") + (d.vendor or "")
            table.add_row(
                d.ip, d.mac or "", Text(safe(vendor, 40)), Text(safe(d.device_id or "", 60)), str(d.attempts),
                str(d.otas), str(d.outcomes.get("upgraded", 0)), str(d.failed),
                Text(safe(", ".join(f"{c} ×{n}" for c, n in d.causes.most_common()), 200)),
            )
        return table

    def summary(self, session: "LiveSession", stats: tuple[int, int] | None, elapsed: float, iface: str,
                writer: Any, stop: "Stop") -> None:
        from rich.text import Text

        console = self.console if self.fmt is LiveFormat.text else self.err_console
        if stop.reason == "pipe":
            console = self.err_console
        if session.devices.by_key:
            console.print(self._table())
        s = session.summary
        lines = [
            f"captured {s.packets} packets ({s.tcp_segments} TCP segments) on {iface} in {elapsed:.1f} s;"
            f" {session.handshakes} handshakes, {session.failed} failed"
            + (f", {session.ota_failed} OTA checks failed" if session.ota_failed else "")
            + (f"; stopped by {stop.reason}" if stop.reason in STOP_REASONS else ""),
        ]
        if session.causes:
            lines.append("causes: " + ", ".join(f"{k} ×{v}" for k, v in sorted(session.causes.items())))
        if session.skipped_not_esp32:
            lines.append(f"{session.skipped_not_esp32} handshakes of other clients not shown (--esp32)")
        if stats is None:
            lines.append("kernel drop count not available on this socket")
        elif stats[1]:
            lines.append(f"WARNING: the kernel dropped {stats[1]} packets (buffer full): the capture is incomplete")
        else:
            lines.append("kernel dropped 0 packets")
        if writer is not None:
            lines.append(f"wrote {writer.packets} packets to {writer.path}")
        names = sorted({a.name for a in s.anomalies})
        if names:
            lines.append("anomalies: " + ", ".join(names))
        for line in lines:
            console.print(Text(line))
        _flush(console.file)


def _flush(f: IO[str]) -> None:
    with contextlib.suppress(BrokenPipeError, ValueError):
        f.flush()
