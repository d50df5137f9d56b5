"""Least privilege for live capture (../shared/docs/reliability.md §3.6, tcpdump `-Z`).

Capturing needs a packet socket, i.e. CAP_NET_RAW; nothing after opening it does. So the order is:
parse the arguments → open the capture socket → drop → verify → only then open output files and
start parsing captured bytes.

* Started as root (e.g. `sudo wsdiag live …`): become `--user` (default: the invoking
  `$SUDO_USER`) with `setgroups([])`, `setresgid`, `setresuid`; a root process that changes all
  its uids loses every capability. `--user root` (or root without sudo and without `--user`)
  keeps root, and says so.
* Started as a user that holds CAP_NET_RAW (file capabilities from `setcap`, or ambient ones from
  systemd `AmbientCapabilities=` / `setpriv --ambient-caps`): clear every capability set.
* Either way `PR_SET_NO_NEW_PRIVS` is set, and the result is verified: no uid 0, `CapEff` 0, and
  a second packet socket is refused. A drop that does not verify stops the capture (exit 2).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import socket
from dataclasses import dataclass

from analyzer.errors import LiveError

SETCAP_LINE = "sudo setcap cap_net_raw,cap_net_admin=eip $(readlink -f $(which python3))"
NEED_PRIVILEGE = (
    "live capture needs root or CAP_NET_RAW: " + SETCAP_LINE
    + " (better on a venv's own python than the system one) — or run with sudo"
    " (root is dropped to --user, default $SUDO_USER, once the socket is open)"
)

_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


@dataclass(frozen=True, slots=True)
class Target:
    """Who the process becomes after the socket is open."""

    name: str
    uid: int
    gid: int


def resolve_user(name: str | None) -> Target | None:
    """The user to drop to, or None to stay as is. Checked before anything is opened."""
    if os.geteuid() != 0:
        return None
    name = name or os.environ.get("SUDO_USER") or None
    if name is None or name == "root":
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if name.isdigit():
            return Target(name, int(name), int(name))
        raise LiveError(f"--user {name!r}: no such user") from None
    if entry.pw_uid == 0:
        return None
    return Target(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _no_new_privs() -> None:
    with contextlib.suppress(OSError, AttributeError):
        _libc().prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def clear_capabilities() -> None:
    """Empties the ambient, effective, permitted and inheritable sets of this process."""
    try:
        libc = _libc()
        libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (_CapData * 2)()
        if libc.capset(ctypes.byref(header), data) != 0:
            err = ctypes.get_errno()
            raise LiveError(f"could not clear capabilities: {os.strerror(err)}")
    except (OSError, AttributeError) as e:
        raise LiveError(f"could not clear capabilities: {e}") from None


def status() -> dict[str, str]:
    """`Uid`, `Gid`, `Groups`, `CapEff`, `CapPrm`, `CapAmb`, `NoNewPrivs` of this process."""
    out: dict[str, str] = {}
    try:
        with open("/proc/self/status", encoding="latin-1") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("Uid", "Gid", "Groups", "CapEff", "CapPrm", "CapAmb", "NoNewPrivs"):
                    out[key] = value.strip()
    except (OSError, LookupError):
        pass
    return out


def has_capabilities() -> bool:
    cap = status().get("CapEff")
    return cap is not None and int(cap, 16) != 0


def can_open_packet_socket() -> bool:
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except OSError:
        return False
    s.close()
    return True


def verify_unprivileged() -> None:
    """Raises LiveError unless this process is no longer root and holds no capability."""
    if 0 in os.getresuid() or 0 in os.getresgid():
        raise LiveError(f"privilege drop did not take: uids {os.getresuid()}, gids {os.getresgid()}")
    if has_capabilities():
        raise LiveError(f"privilege drop did not take: CapEff {status().get('CapEff')}")
    if can_open_packet_socket():
        raise LiveError("privilege drop did not take: a new packet socket can still be opened")


def drop(target: Target | None) -> str:
    """Gives up what capturing needed, after the socket is open. Returns what was done, for the log."""
    if os.geteuid() == 0:
        if target is None:
            return "running as root (no --user and no $SUDO_USER)"
        try:
            os.setgroups([])
            os.setresgid(target.gid, target.gid, target.gid)
            os.setresuid(target.uid, target.uid, target.uid)
        except OSError as e:
            raise LiveError(f"could not become user {target.name!r}: {e.strerror}") from None
        _no_new_privs()
        verify_unprivileged()
        return f"dropped root: now user {target.name} (uid {target.uid})"
    if has_capabilities():
        clear_capabilities()
        _no_new_privs()
        verify_unprivileged()
        return "capabilities cleared"
    _no_new_privs()
    return "unprivileged"
