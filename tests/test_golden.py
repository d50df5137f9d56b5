"""End to end: `wsdiag analyze --format json` on every shipped capture equals its golden report.

The golden files pin the whole contract at once (schema, reconstructed headers in wire order,
outcomes, causes, redaction). After an intended change, run `pytest --update-golden` and review
the diff like code.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
CAPTURES = sorted((ROOT / "captures").glob("*.pcap*"))
GOLDEN = Path(__file__).parent / "golden"


def run_json(capture: Path) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "analyzer", "analyze", str(capture.relative_to(ROOT)), "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@pytest.mark.parametrize("capture", CAPTURES, ids=[c.name for c in CAPTURES])
def test_report_matches_golden(capture: Path, update_golden: bool) -> None:
    code, doc = run_json(capture)
    golden = GOLDEN / (capture.name + ".json")
    if update_golden:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(
            json.dumps({"exit": code, "report": doc}, ensure_ascii=False, indent=1) + "\n", "utf-8"
        )
    assert golden.exists(), f"no golden report for {capture.name}: run `pytest --update-golden` and review it"
    expected = json.loads(golden.read_text("utf-8"))
    assert doc == expected["report"]
    assert code == expected["exit"]


def test_golden_reports_follow_the_schema() -> None:
    """Every golden report has the fixed field names scripts rely on (schema wsdiag/1)."""
    for golden in GOLDEN.glob("*.json"):
        doc = json.loads(golden.read_text("utf-8"))["report"]
        assert doc["schema"] == "wsdiag/1"
        for inp in doc["inputs"]:
            assert {"path", "packets", "anomalies"} <= inp.keys()
        for h in doc["handshakes"]:
            assert {
                "client",
                "server",
                "start",
                "tcp_stream",
                "request",
                "response",
                "frames",
                "outcome",
                "cause",
                "findings",
            } <= h.keys()
            assert h["outcome"] in {"upgraded", "rejected", "no-response", "reset", "not-http"}
            if h["request"]:
                assert all(isinstance(p, list) and len(p) == 2 for p in h["request"]["headers"])
            if h["cause"]:
                assert {"name", "code", "severity", "evidence", "fix"} <= h["cause"].keys()


def test_streamed_json_is_the_document_text() -> None:
    """`--format json` writes the report one handshake at a time (`tree.json_chunks`); the text
    must be exactly the whole document's, compact and indented, redacted or not, for one
    capture, several, and none."""
    from analyzer.report import tree
    from analyzer.run import analyze_path
    from analyzer.textsafe import json_text

    reports = [analyze_path(str(c)) for c in CAPTURES]
    assert sum(len(r.otas) for r in reports) and sum(len(r.diagnoses) for r in reports) > 50
    for group in ([reports[0]], reports, []):
        for indent in (None, 2):
            for shown in (False, True):
                whole = json_text(tree.document(group, shown), indent)
                assert "".join(tree.json_chunks(group, shown, indent)) == whole
