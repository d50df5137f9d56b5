"""What the user tells wsdiag about the server: flags, and optionally the xiaozhi `config.yaml`.

`Config` is frozen; the CLI builds one from flags and `load_server_config` returns a new one with
the values a xiaozhi-esp32-server configuration file supplies (see
../shared/docs/xiaozhi-protocol.md §1.4 for where the server reads each of them).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from analyzer.errors import UsageError

DEFAULT_TOKEN_MAX_AGE_S = 2_592_000  # 30 days: AuthManager's default when expire_seconds is unset
PROFILES = ("auto", "xiaozhi", "rfc6455")


@dataclass(frozen=True, slots=True)
class Config:
    profile: str = "auto"  # "auto" | "xiaozhi" | "rfc6455"
    expect_path: str | None = None  # e.g. "/xiaozhi/v1/"
    expect_port: int | None = None
    auth_key: str | None = None  # server.auth_key / manager-api server.secret: verifies tokens offline
    token_max_age_s: int = DEFAULT_TOKEN_MAX_AGE_S
    auth_enabled: bool | None = None  # from --server-config; None = unknown
    allowed_devices: tuple[str, ...] = ()
    configured_ws_url: str | None = None
    select: tuple[str, ...] = ()  # code prefixes or names; empty = all
    ignore: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise UsageError(f"unknown profile {self.profile!r}; use one of: {', '.join(PROFILES)}")


def _usable_secret(value: Any) -> str | None:
    """The server ignores secrets that still contain the placeholder text (`你的…`)."""
    if not isinstance(value, str) or not value.strip() or "你" in value:
        return None
    return value


def _section(data: dict[str, Any], name: str, path: str) -> dict[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{path}: `{name}` must be a mapping, not {type(value).__name__}")
    return value


def _expire_seconds(auth: dict[str, Any], path: str, default: int) -> int:
    value = auth.get("expire_seconds")
    if value is None:
        return default
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{path}: server.auth.expire_seconds must be a number, not {value!r}") from None
    # AuthManager: None, 0 or negative means the 30-day default
    return seconds if seconds > 0 else DEFAULT_TOKEN_MAX_AGE_S


def _allowed_devices(auth: dict[str, Any], path: str) -> tuple[str, ...]:
    value = auth.get("allowed_devices")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise UsageError(f"{path}: server.auth.allowed_devices must be a list")
    return tuple(str(item) for item in value)


def _websocket_url(server: dict[str, Any]) -> str | None:
    value = server.get("websocket")
    if isinstance(value, str) and value.strip() and "你" not in value:
        # manager-api's server.websocket may hold several URLs separated by ';'
        return value.split(";")[0].strip()
    return None


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except OSError as exc:
        raise UsageError(f"cannot read server config {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a UTF-8 text file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UsageError(f"{path}: not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: expected a YAML mapping (xiaozhi config.yaml), got {type(data).__name__}")
    return data


def load_server_config(path: str, base: Config) -> Config:
    """Return `base` updated with what a xiaozhi `config.yaml` (or `data/.config.yaml`) says.

    Reads `server.auth.enabled`, `server.auth.allowed_devices`, `server.auth.expire_seconds`,
    `server.auth_key` (else `manager-api.secret`, as app.py does) and `server.websocket`.
    Values already set in `base` by flags win over the file for the key only.
    """
    data = _read_yaml(path)
    server = _section(data, "server", path)
    auth = _section(server, "auth", path)
    manager = _section(data, "manager-api", path)

    enabled = auth.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        if str(enabled).lower() not in ("true", "false"):
            raise UsageError(f"{path}: server.auth.enabled must be true or false, not {enabled!r}")
        enabled = str(enabled).lower() == "true"

    key = base.auth_key or _usable_secret(server.get("auth_key")) or _usable_secret(manager.get("secret"))
    max_age = base.token_max_age_s
    if max_age == DEFAULT_TOKEN_MAX_AGE_S:
        max_age = _expire_seconds(auth, path, DEFAULT_TOKEN_MAX_AGE_S)
    return dataclasses.replace(
        base,
        auth_key=key,
        auth_enabled=base.auth_enabled if base.auth_enabled is not None else enabled,
        allowed_devices=base.allowed_devices or _allowed_devices(auth, path),
        token_max_age_s=max_age,
        configured_ws_url=base.configured_ws_url or _websocket_url(server),
    )
