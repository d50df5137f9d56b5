"""The command line as a user meets it: exit codes, stdin, formats, one-line errors, secrets."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
AUTH_FAILED = ROOT / "captures" / "xiaozhi-auth-failed-no-token.pcap"
GOOD = ROOT / "captures" / "xiaozhi-good-handshake.pcap"
WITH_TOKEN = ROOT / "captures" / "nginx-deny-403.pcap"


def wsdiag(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "analyzer", *args], cwd=ROOT, input=stdin, capture_output=True, timeout=60
    )


def test_exit_codes_say_what_was_found() -> None:
    assert wsdiag("analyze", str(GOOD)).returncode == 0
    assert wsdiag("analyze", str(AUTH_FAILED)).returncode == 1
    assert wsdiag("analyze", "no/such/file.pcap").returncode == 2


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (None, "no such file"),
        (b"", "empty"),
        (b"hello, this is text\n", "not a pcap or pcapng"),
        (b"BZh91AY&SY" + b"\x00" * 40, "bzip2"),
    ],
)
def test_unreadable_input_is_one_line_and_exit_2(tmp_path: Path, content: bytes | None, needle: str) -> None:
    path = tmp_path / "input.pcap"
    if content is not None:
        path.write_bytes(content)
    proc = wsdiag("analyze", str(path))
    err = proc.stderr.decode()
    assert proc.returncode == 2
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("wsdiag: error:")
    assert needle in lines[0].lower()


def test_stdin_and_gzip_stream_like_a_file() -> None:
    """`tcpdump -w - | wsdiag analyze -` works, compressed or not, without seeking."""
    plain = json.loads(wsdiag("analyze", str(AUTH_FAILED), "-f", "json").stdout)
    piped = wsdiag("analyze", "-", "-f", "json", stdin=gzip.compress(AUTH_FAILED.read_bytes()))
    doc = json.loads(piped.stdout)
    assert piped.returncode == 1
    assert [h["request"] for h in doc["handshakes"]] == [h["request"] for h in plain["handshakes"]]
    assert doc["handshakes"][0]["cause"]["name"] == plain["handshakes"][0]["cause"]["name"]


def test_jsonl_is_one_handshake_object_per_line() -> None:
    proc = wsdiag("analyze", str(AUTH_FAILED), str(GOOD), "-f", "jsonl")
    rows = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert len(rows) == 2 and {r["kind"] for r in rows} == {"handshake"}
    assert {r["outcome"] for r in rows} == {"upgraded"}
    assert [r["cause"]["name"] if r["cause"] else None for r in rows] == ["missing-token", None]


def test_secrets_are_redacted_unless_asked() -> None:
    raw = WITH_TOKEN.read_bytes()
    start = raw.index(b"Authorization: Bearer ") + len(b"Authorization: Bearer ")
    signature = raw[start : start + 43].decode()
    for fmt in ("text", "json", "jsonl"):
        out = wsdiag("analyze", str(WITH_TOKEN), "-f", fmt).stdout.decode()
        assert signature not in out and "redacted" in out
    shown = wsdiag("analyze", str(WITH_TOKEN), "-f", "json", "--show-secrets").stdout.decode()
    assert signature in shown


def test_rules_and_explain() -> None:
    listing = wsdiag("rules", "-f", "json")
    rules = json.loads(listing.stdout)
    names = {r["name"] for r in rules}
    assert {"missing-token", "port-closed", "proxy-rejected", "server-is-running-page"} <= names
    page = wsdiag("explain", "missing-token").stdout.decode()
    assert "Fix" in page and "Authorization" in page
    assert wsdiag("explain", "WS999-nope").returncode == 2


def test_help_teaches_exit_codes_and_examples() -> None:
    text = wsdiag("analyze", "--help").stdout.decode()
    assert "Exit codes" in text and "--format" in text and "tcpdump" in text


def test_directory_input_expands_to_its_captures(tmp_path: Path) -> None:
    """In path order, subfolders included (rotated captures in dated folders); a link to a
    directory is not followed (no loops, nothing outside the tree)."""
    (tmp_path / "a.pcap").write_bytes(GOOD.read_bytes())
    (tmp_path / "b.pcap").write_bytes(AUTH_FAILED.read_bytes())
    (tmp_path / "notes.txt").write_text("not a capture")
    (tmp_path / "2026-11-25").mkdir()
    (tmp_path / "2026-11-25" / "c.pcap.gz").write_bytes(gzip.compress(GOOD.read_bytes()))
    (tmp_path / "loop").symlink_to(tmp_path, target_is_directory=True)
    doc = json.loads(wsdiag("analyze", str(tmp_path), "-f", "json").stdout)
    paths = [Path(i["path"]).relative_to(tmp_path).as_posix() for i in doc["inputs"]]
    assert paths == ["2026-11-25/c.pcap.gz", "a.pcap", "b.pcap"]


def test_limits_are_configurable_and_hitting_one_is_named() -> None:
    doc = json.loads(wsdiag("analyze", str(GOOD), "-f", "json", "--limit", "max_headers=3").stdout)
    request = doc["handshakes"][0]["request"]
    assert len(request["headers"]) == 3 and "too-many-headers" in request["anomalies"]
    bad = wsdiag("analyze", str(GOOD), "--limit", "max_everything=3")
    assert bad.returncode == 2 and b"max_headers" in bad.stderr and b"Traceback" not in bad.stderr


NETNS = ROOT / "captures" / "netns-device-id-not-link-mac.pcap"


def test_failed_and_client_narrow_what_is_shown_not_what_is_counted() -> None:
    """--failed shows only failures; --client picks one device by IP, MAC or Device-Id (any
    case) and the exit code then speaks for it alone; the summary counts every handshake."""
    three = [str(NETNS), str(GOOD), str(AUTH_FAILED)]

    def shown(*args: str) -> tuple[int, list[str], dict]:
        proc = wsdiag("analyze", *three, "-f", "json", *args)
        doc = json.loads(proc.stdout)
        return proc.returncode, [Path(h["input"]).name for h in doc["handshakes"]], doc["summary"]

    code, names, summary = shown("--failed")
    assert (code, names) == (1, [AUTH_FAILED.name]) and summary["handshakes"] == 3
    code, names, _ = shown("--client", "10.99.77.2")
    assert (code, names) == (0, [NETNS.name])  # that device's attempt was fine
    code, names, _ = shown("--client", "24:0A:C4:12:34:56")  # its link MAC, upper-case
    assert (code, names) == (0, [NETNS.name])
    code, names, _ = shown("--client", "A0:B7:65:12:34:56", "--failed")  # a Device-Id
    assert (code, names) == (1, [AUTH_FAILED.name])
    text = wsdiag("analyze", *three, "--failed").stdout.decode()
    assert text.count("#1 ") == 1 and "#2 " not in text and "missing-token" in text


def test_unreadable_tls_sessions_say_how_to_read_them() -> None:
    """wss:// without keys: a 403 inside TLS cannot be seen, and the report says so and how to
    fix it; with the key log the same capture names the refusal and the hint goes."""
    capture = ROOT / "captures" / "wss" / "caddy-deny-403-python-tls13.pcap"
    plain = wsdiag("analyze", str(capture))
    assert plain.returncode == 0 and b"1 TLS session(s)" in plain.stdout and b"--keylog" in plain.stdout
    if shutil.which("tshark") is None:
        pytest.skip("decrypting needs tshark")
    keyed = wsdiag("analyze", str(capture), "--keylog", str(capture.with_suffix(".keylog")))
    assert keyed.returncode == 1 and b"proxy-rejected" in keyed.stdout
    assert b"could not be read" not in keyed.stdout
