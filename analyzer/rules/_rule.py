"""The rule type, the hit a rule yields, and the context it sees.

A rule's code, name, default severity, title and fix are declared once, in `@rule(...)`; the
function only yields `Hit`s (what it saw, the evidence). The engine turns hits into
`model.Finding`s, so no message ever hard-codes a code (ruff's `codes.rs`, flake8's Violation).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from analyzer.config import Config
from analyzer.model import Finding, Handshake, OtaExchange, Severity
from analyzer.rules._facts import CaptureIndex

SEVERITY_ORDER = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.INFO: 2}
DOC_SECTIONS = ("What it checks", "Why it is refused", "Example", "Fix", "References")
_CODE_RE = re.compile(r"^WS\d{3}$")
_NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True, slots=True)
class Hit:
    """One observation of a rule. `None` fields take the rule's defaults."""

    message: str
    evidence: str = ""
    severity: Severity | None = None
    rank: int | None = None
    fix: str | None = None


@dataclass(frozen=True, slots=True)
class Context:
    """What a rule may look at besides the handshake itself.

    `xiaozhi` is the profile decision for this handshake (xiaozhi contract rules run only when
    true). `now_ns` is the reference time for token ages: the handshake's own capture time.
    """

    config: Config
    handshakes: Sequence[Handshake] = ()
    otas: Sequence[OtaExchange] = ()
    xiaozhi: bool = False
    now_ns: int = 0
    index: CaptureIndex | None = None  # of `handshakes` and `otas`; built here when not given

    def __post_init__(self) -> None:
        if self.index is None:
            object.__setattr__(self, "index", CaptureIndex(self.handshakes, self.otas))

    @property
    def lookup(self) -> CaptureIndex:
        assert self.index is not None  # set by __post_init__
        return self.index


Check = Callable[[Handshake, Context], Iterator[Hit]]


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    name: str
    severity: Severity
    title: str
    fix: str
    rank: int
    check: Check
    xiaozhi_only: bool = False

    @property
    def doc(self) -> str:
        """The rule's documentation page: its check function's docstring."""
        return inspect.cleandoc(self.check.__doc__ or "")

    def __call__(self, hs: Handshake, ctx: Context) -> Iterator[Hit]:
        return self.check(hs, ctx)

    def finding(self, hit: Hit) -> Finding:
        return Finding(
            code=self.code,
            name=self.name,
            severity=hit.severity or self.severity,
            message=hit.message,
            evidence=hit.evidence,
            fix=hit.fix or self.fix,
            rank=self.rank if hit.rank is None else hit.rank,
        )

    def matches(self, selector: str) -> bool:
        """`--select/--ignore` semantics: a code prefix (`WS1`, `WS104`) or the exact name."""
        sel = selector.strip()
        return self.code.startswith(sel.upper()) or self.name == sel.lower()


def rule(
    code: str,
    name: str,
    severity: Severity,
    *,
    title: str,
    fix: str,
    rank: int = 50,
    xiaozhi_only: bool = False,
) -> Callable[[Check], Rule]:
    """Declare a rule. `rank` orders causes (lower = more likely the root cause)."""
    if not _CODE_RE.match(code) or not _NAME_RE.match(name):
        raise ValueError(f"bad rule code or name: {code} {name}")

    def wrap(check: Check) -> Rule:
        return Rule(code, name, severity, title, fix, rank, check, xiaozhi_only)

    return wrap


def sort_key(finding: Finding) -> tuple[int, int, str]:
    return SEVERITY_ORDER[finding.severity], finding.rank, finding.code
