"""Every bound wsdiag puts on memory and work, in one place, so hostile input cannot grow them.

Defaults follow the tools users already trust (libpcap's record size, Zeek's and Suricata's
reassembly caps, websockets' header limits); see ../shared/docs/reliability.md §3.5.
Hitting a limit is always recorded as a named anomaly, never a silent drop.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Limits:
    max_record_bytes: int = 262_144  # libpcap's largest packet; bigger records are damage
    max_block_bytes: int = 16 * 1024 * 1024  # libpcap's largest pcapng block
    max_flows: int = 65_536  # tracked TCP connections; the oldest idle ones are evicted past this
    max_head_bytes: int = 64 * 1024  # HTTP head buffered per direction before giving up
    max_headers: int = 1_000  # header lines kept per message
    max_body_bytes: int = 64 * 1024  # HTTP body kept (OTA JSON, error pages)
    max_ooo_bytes: int = 256 * 1024  # out-of-order bytes buffered per direction
    max_ooo_segments: int = 512  # out-of-order segments buffered per direction (bounds CPU per packet)
    max_frames: int = 16  # WebSocket frames kept per handshake and direction
    max_frame_payload: int = 4096  # bytes of each frame payload kept (after inflating)
    max_inflate_bytes: int = 1024 * 1024  # output cap of permessage-deflate per message
    idle_timeout_s: float = 300.0  # established flows with no packet for this long are closed
    syn_timeout_s: float = 60.0  # half-open flows (SYN only) expire sooner
    max_anomaly_samples: int = 25  # per anomaly name; further ones are only counted
    max_handshakes: int = 10_000  # handshakes and OTA exchanges kept for the report (the first ones)


DEFAULT_LIMITS = Limits()


def build_limits(max_flows: int, idle_timeout_s: float, overrides: list[str] | None = None) -> Limits:
    """Limits from the CLI: the two common flags, then any `--limit NAME=VALUE` (names as above)."""
    from dataclasses import fields

    from analyzer.errors import UsageError

    values: dict[str, int | float] = {"max_flows": max_flows, "idle_timeout_s": idle_timeout_s}
    kinds = {f.name: f.type for f in fields(Limits)}
    for item in overrides or []:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in kinds:
            raise UsageError(f"--limit takes NAME=VALUE with NAME one of: {', '.join(kinds)} (got {item!r})")
        try:
            value: int | float = float(raw) if kinds[name] == "float" else int(raw)
        except ValueError:
            raise UsageError(f"--limit {name}: {raw!r} is not a number") from None
        if value <= 0:
            raise UsageError(f"--limit {name}: must be greater than 0")
        values[name] = value
    return Limits(**values)  # type: ignore[arg-type]
