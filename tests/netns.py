"""A two-host lab for live-capture tests: network namespaces "esp32" and "server" joined by a veth pair.

Each lab gets fresh names (`wsd-esp32-<rand>`, `wsd-server-<rand>`), addresses in a private
10.99.N.0/24 that exists only inside the two namespaces (no route leaves them), and an Espressif
MAC on the esp32 side, taken from the OUI database (`analyzer.oui`). `destroy` removes both
namespaces (and with them the veth pair) and is safe to call twice.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import subprocess
from dataclasses import dataclass


def skip_reason() -> str | None:
    """Why namespace tests cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (CI runs as root)"
    if shutil.which("ip") is None:
        return "iproute2 `ip` is not installed"
    probe = f"wsd-probe-{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` fails here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def espressif_mac() -> str:
    """A MAC in an Espressif block of the OUI database, with random low bytes."""
    from analyzer.oui import espressif_prefixes, is_espressif

    prefixes = [p for p in espressif_prefixes() if "/" not in p]
    prefix = "24:0a:c4" if "24:0a:c4" in prefixes else prefixes[0]
    mac = prefix + "".join(f":{random.randrange(256):02x}" for _ in range(3))
    assert is_espressif(mac)
    return mac


@dataclass
class Lab:
    esp32_ns: str
    server_ns: str
    esp32_if: str
    server_if: str
    esp32_ip: str
    server_ip: str
    esp32_mac: str

    def in_esp32(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.esp32_ns, *argv]

    def in_server(self, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", self.server_ns, *argv]


def create() -> Lab:
    tag = secrets.token_hex(3)
    net = random.randrange(1, 255)
    lab = Lab(
        esp32_ns=f"wsd-esp32-{tag}",
        server_ns=f"wsd-server-{tag}",
        esp32_if=f"wsde{tag}",
        server_if=f"wsds{tag}",
        esp32_ip=f"10.99.{net}.2",
        server_ip=f"10.99.{net}.1",
        esp32_mac=espressif_mac(),
    )
    try:
        _ip("netns", "add", lab.esp32_ns)
        _ip("netns", "add", lab.server_ns)
        _ip("link", "add", lab.esp32_if, "type", "veth", "peer", "name", lab.server_if)
        _ip("link", "set", lab.esp32_if, "netns", lab.esp32_ns)
        _ip("link", "set", lab.server_if, "netns", lab.server_ns)
        _ip("-n", lab.esp32_ns, "link", "set", lab.esp32_if, "address", lab.esp32_mac)
        for ns, ifname, addr in (
            (lab.esp32_ns, lab.esp32_if, lab.esp32_ip),
            (lab.server_ns, lab.server_if, lab.server_ip),
        ):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
            _ip("-n", ns, "link", "set", ifname, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
    except Exception:
        destroy(lab)
        raise
    return lab


def destroy(lab: Lab) -> None:
    for ns in (lab.esp32_ns, lab.server_ns):
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "link", "del", lab.esp32_if], capture_output=True)  # if never moved
