"""The README's promises stay true: its rule table matches the registry, its set-up command
runs the shipped capture the tests use, and the test command is the one CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from analyzer.rules import RULES

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_rule_table_lists_every_rule_with_its_name_and_severity() -> None:
    table = README.split("<!-- rules-table")[1].split("<!-- /rules-table -->")[0]
    rows = re.findall(r"^\| (WS\d{3}) \| `([a-z0-9-]+)` \| (\w+) \|", table, re.M)
    assert rows == [(r.code, r.name, str(r.severity)) for r in RULES]


def test_setup_command_analyses_a_shipped_capture_and_ci_runs_the_test_command() -> None:
    capture = re.search(r"wsdiag analyze (captures/\S+\.pcap)", README)
    assert capture is not None and (ROOT / capture.group(1)).is_file()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert capture.group(1) in ci
    test_command = re.search(r"```sh\n(python3 -m pytest[^\n]*)\n```", README)
    assert test_command is not None and test_command.group(1) in ci
