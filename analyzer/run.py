"""The edge where inputs are opened: a capture file in, a `Report` out (I/O lives here and in sources).

Kept apart from `pipeline` so that the pipeline stays a pure function of segments, and the same
pipeline serves files, stdin and live interfaces.
"""

from __future__ import annotations

from collections.abc import Iterator

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


def harvest_file(path: str, summary: InputSummary, limits: Limits) -> Harvest:
    table = ConnectionTable(limits)
    try:
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
        table.flush()
        raise
    finally:
        table.flush()
        summary.anomalies.extend(table.harvest.anomalies)
    return table.harvest


def report_from(summary: InputSummary, harvest: Harvest, config: Config) -> Report:
    from analyzer import rules  # imported on use: listing rules or reading files needs no rule engine

    chosen = select_handshakes(harvest, config.expect_port)
    diagnoses = rules.diagnose(chosen, harvest.otas, config)
    otas = rules.diagnose_otas(harvest.otas, chosen, config)
    return Report(summary, diagnoses, otas, harvest.connections, harvest.tls_sessions)


def analyze_path(path: str, config: Config | None = None, limits: Limits = DEFAULT_LIMITS) -> Report:
    """Reads one capture and diagnoses every handshake in it. Never raises for bad input."""
    summary = InputSummary(path)
    harvest = harvest_file(path, summary, limits)
    return report_from(summary, harvest, config or Config())
