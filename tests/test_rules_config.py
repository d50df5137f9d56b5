"""analyzer.config (Config, load_server_config) and analyzer.reproduce."""

from __future__ import annotations

import shlex
from dataclasses import replace
from pathlib import Path

import pytest
from factories import TOKEN, make_handshake, make_request, silent_drop, syn_only

from analyzer.config import DEFAULT_TOKEN_MAX_AGE_S, Config, load_server_config
from analyzer.errors import UsageError
from analyzer.model import Payload
from analyzer.reproduce import command

CONFIG_YAML = """
server:
  ip: 0.0.0.0
  port: 8000
  auth_key: ''
  websocket: ws://192.168.1.10:8000/xiaozhi/v1/;ws://10.0.0.2:8000/xiaozhi/v1/
  auth:
    enabled: true
    allowed_devices:
      - "24:0A:C4:1D:3B:F0"
    expire_seconds: 86400
manager-api:
  url: http://127.0.0.1:8002/xiaozhi
  secret: real-secret
"""


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "config.yaml"
    p.write_text(text, encoding="utf-8")
    return str(p)


def test_load_server_config_reads_auth(tmp_path: Path) -> None:
    """enabled, allowed_devices, expire_seconds, the key fallback and the first websocket URL."""
    cfg = load_server_config(write(tmp_path, CONFIG_YAML), Config())
    assert cfg.auth_enabled is True
    assert cfg.allowed_devices == ("24:0A:C4:1D:3B:F0",)
    assert cfg.token_max_age_s == 86400
    assert cfg.auth_key == "real-secret"
    assert cfg.configured_ws_url == "ws://192.168.1.10:8000/xiaozhi/v1/"


def test_placeholder_secrets_are_ignored(tmp_path: Path) -> None:
    """Values containing 你 are placeholders, as the server treats them."""
    text = "server:\n  auth_key: 你的密钥\nmanager-api:\n  secret: 你的secret\n"
    assert load_server_config(write(tmp_path, text), Config()).auth_key is None


def test_auth_key_wins_over_manager_secret(tmp_path: Path) -> None:
    """server.auth_key comes first."""
    text = "server:\n  auth_key: k1\nmanager-api:\n  secret: k2\n"
    assert load_server_config(write(tmp_path, text), Config()).auth_key == "k1"


def test_flags_win_over_file(tmp_path: Path) -> None:
    """Values given as flags are kept."""
    base = Config(auth_key="flag", auth_enabled=False, token_max_age_s=60)
    cfg = load_server_config(write(tmp_path, CONFIG_YAML), base)
    assert (cfg.auth_key, cfg.auth_enabled, cfg.token_max_age_s) == ("flag", False, 60)


def test_non_positive_expire_means_default(tmp_path: Path) -> None:
    """expire_seconds 0 is the 30-day default, as in AuthManager."""
    text = "server:\n  auth:\n    expire_seconds: 0\n"
    assert load_server_config(write(tmp_path, text), Config()).token_max_age_s == DEFAULT_TOKEN_MAX_AGE_S


def test_empty_file_changes_nothing(tmp_path: Path) -> None:
    """An empty YAML file is an empty config."""
    assert load_server_config(write(tmp_path, ""), Config()) == Config()


@pytest.mark.parametrize(
    "text",
    [
        "server: [1, 2\n",
        "- a\n- b\n",
        "server: 5\n",
        "server:\n  auth:\n    allowed_devices: abc\n",
        "server:\n  auth:\n    enabled: maybe\n",
    ],
)
def test_bad_files_raise_one_line_usage_error(tmp_path: Path, text: str) -> None:
    """Broken YAML or wrong shapes: UsageError with a single line."""
    with pytest.raises(UsageError) as exc:
        load_server_config(write(tmp_path, text), Config())
    assert "\n" not in str(exc.value)


def test_missing_file_is_usage_error(tmp_path: Path) -> None:
    """A missing file is a UsageError naming it."""
    with pytest.raises(UsageError, match=r"nope\.yaml"):
        load_server_config(str(tmp_path / "nope.yaml"), Config())


def test_unknown_profile_is_usage_error() -> None:
    """Config rejects unknown profiles."""
    with pytest.raises(UsageError):
        Config(profile="mqtt")


# --- reproduce ----------------------------------------------------------------------------------


def test_curl_command_replays_every_header_verbatim() -> None:
    """curl gets the target URL and every header, in order, with the raw token."""
    cmd = command(make_handshake())
    assert cmd is not None
    argv = shlex.split(cmd)
    assert argv[0] == "curl" and argv[-1] == "http://192.168.1.10:8000/xiaozhi/v1/"
    sent = [argv[i + 1] for i, a in enumerate(argv) if a == "-H"]
    assert sent[:3] == [
        "Host: 192.168.1.10",
        f"Authorization: Bearer {TOKEN}",
        "Client-Id: 3f2b8c1e-9a7d-4e21-b0c4-5d6e7f809a1b",
    ]
    assert "User-Agent:" in sent  # curl's own User-Agent suppressed
    assert "--http1.1" in argv


def test_curl_command_keeps_method_version_and_duplicates() -> None:
    """HTTP/1.0, POST and repeated headers come out as captured."""
    req = make_request(method="POST", version="HTTP/1.0", add_headers=[("Connection", "Upgrade")])
    argv = shlex.split(command(silent_drop(req)) or "")
    assert "--http1.0" in argv and argv[argv.index("-X") + 1] == "POST"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "-H"].count("Connection: Upgrade") == 2


def test_curl_command_without_host_suppresses_curls_host() -> None:
    """A request without Host is replayed without Host."""
    argv = shlex.split(command(make_handshake(make_request(set_headers={"Host": None}))) or "")
    assert "Host:" in argv


def test_transport_only_commands() -> None:
    """SYN-only → nc; ClientHello → openssl s_client."""
    assert (command(syn_only()) or "").startswith("nc -vz")
    tls = make_handshake(no_request=True, no_response=True)
    tls = replace(tls, transport=replace(tls.transport, client_payload=Payload.TLS))
    assert (command(tls) or "").startswith("openssl s_client -connect 192.168.1.10:8000")
