"""The edge where inputs are opened: a capture file in, a `Report` out (I/O lives here and in sources).

Kept apart from `pipeline` so that the pipeline stays a pure function of segments, and the same
pipeline serves files, stdin and live interfaces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from analyzer.config import Config
from analyzer.errors import CaptureError
from analyzer.limits import DEFAULT_LIMITS, Limits
from analyzer.model import Anomaly, InputSummary, Report, Segment
from analyzer.pipeline import ConnectionTable, Harvest, select_handshakes


def file_segments(path: str, summary: InputSummary, limits: Limits) -> Iterator[Segment]:
    """Streams the TCP segments of a capture file (or `-` for stdin); damage goes into `summary`."""
    from analyzer.sources.decode import AnomalyLog, decode
    from analyzer.sources.pcapfile import open_input, read_records

    log = AnomalyLog(summary.anomalies, limits)
    with open_input(path) as stream:
        for rec in read_records(stream, summary, limits):
            seg = decode(rec.linktype, rec.data, rec.frame, rec.ts_ns, log)
            if seg is not None:
                summary.tcp_segments += 1
                yield seg


def harvest_file(
    path: str,
    summary: InputSummary,
    limits: Limits,
    fast: bool = True,
    progress: Callable[[int], None] | None = None,
) -> Harvest:
    """Feeds a capture to a `ConnectionTable`. `fast` lets bulk packets bypass segment building
    (`analyzer.fastpath`: same results, several times quicker); `progress` gets byte offsets."""
    table = ConnectionTable(limits)
    try:
        if fast:
            from analyzer.fastpath import harvest_into

            harvest_into(path, summary, limits, table, progress)
        else:
            for seg in file_segments(path, summary, limits):
                table.feed(seg)
    except CaptureError as e:
        summary.error = str(e)
        summary.readable_to_end = False
    except KeyboardInterrupt:
        summary.anomalies.append(
            Anomaly("interrupted", f"stopped by the user after {summary.packets} packets")
        )
        summary.readable_to_end = False
        raise  # after `finally` has flushed what was read
    finally:
        table.flush()
        summary.anomalies.extend(table.harvest.anomalies)
    return table.harvest


def report_from(summary: InputSummary, harvest: Harvest, config: Config) -> Report:
    from analyzer import rules  # imported on use: listing rules or reading files needs no rule engine

    chosen = select_handshakes(harvest, config.expect_port)
    # the connections not reported still tell the rules something: a proxy's refused connection
    # to its backend (on a port no attempt went to) is why it answered 502/503
    shown = {id(h) for h in chosen}
    unreported = [h for h in harvest.handshakes if id(h) not in shown]
    diagnoses = rules.diagnose(chosen, harvest.otas, config, context=unreported)
    otas = rules.diagnose_otas(harvest.otas, chosen, config)
    return Report(summary, diagnoses, otas, harvest.connections, harvest.tls_sessions)


def analyze_path(
    path: str,
    config: Config | None = None,
    limits: Limits = DEFAULT_LIMITS,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Reads one capture and diagnoses every handshake in it. Never raises for bad input."""
    summary = InputSummary(path)
    harvest = harvest_file(path, summary, limits, progress=progress)
    return report_from(summary, harvest, config or Config())


PROGRESS_MIN_BYTES = 8_000_000
"""Inputs smaller than this finish before a progress bar would be worth drawing."""


def _file_size(path: str) -> int:
    import os
    import stat

    try:
        st = os.stat(path)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


def _progress_to(bar: Any, task: Any, done: int, size: int) -> Callable[[int], None]:
    def update(pos: int) -> None:
        bar.update(task, completed=done + min(pos, size))

    return update


def _analyze_job(job: tuple[str, Config, Limits]) -> Report:
    return analyze_path(*job)


def analyze_paths(
    paths: list[str], config: Config, limits: Limits, jobs: int = 1, show_progress: bool = False
) -> tuple[list[Report], bool]:
    """Reports for `paths`, in their order, and whether the user interrupted (then: those done).

    `jobs` > 1 analyses files in that many worker processes (stdin is always read here); the
    reports still come back in input order. `show_progress` draws a rich progress bar on
    stderr (the caller decides: only when stderr is a terminal) if the inputs are big enough.
    """
    sizes = [_file_size(p) for p in paths]
    bar = None
    if show_progress and sum(sizes) >= PROGRESS_MIN_BYTES:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=True,
        )
    reports: list[Report] = []
    try:
        if bar is not None:
            bar.start()
        task = bar.add_task("reading", total=sum(sizes)) if bar is not None else None
        jobs = max(1, min(jobs, len(paths)))
        if jobs > 1 and "-" not in paths:
            import multiprocessing

            with multiprocessing.get_context("fork").Pool(jobs) as pool:
                for i, report in enumerate(pool.imap(_analyze_job, [(p, config, limits) for p in paths])):
                    reports.append(report)
                    if bar is not None and task is not None:
                        bar.advance(task, sizes[i])
        else:
            done = 0
            for path, size in zip(paths, sizes, strict=True):
                progress = _progress_to(bar, task, done, size) if bar is not None and size else None
                reports.append(analyze_path(path, config, limits, progress))
                done += size
                if bar is not None and task is not None:
                    bar.update(task, completed=done)
    except KeyboardInterrupt:
        return reports, True
    finally:
        if bar is not None:
            bar.stop()
    return reports, False
