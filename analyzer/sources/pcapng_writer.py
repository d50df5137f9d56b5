"""A minimal pcapng writer for live capture: one section, one interface, nanosecond timestamps.

Each packet is one Enhanced Packet Block written with a single `write` on an unbuffered file,
so a hard kill loses at most the record being written (reliability.md §2.G5); `close` adds an
Interface Statistics Block (packets received and dropped by the kernel) so tools see the loss.
The file is created mode 0600: a raw capture holds tokens that every report redacts.
"""

from __future__ import annotations

import os
import struct

from analyzer import __version__

_BOM = 0x1A2B3C4D


def _option(code: int, value: bytes) -> bytes:
    pad = (-len(value)) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\0" * pad


def _block(block_type: int, body: bytes) -> bytes:
    total = 12 + len(body)
    return struct.pack("<II", block_type, total) + body + struct.pack("<I", total)


def _ts(ts_ns: int) -> bytes:
    return struct.pack("<II", (ts_ns >> 32) & 0xFFFFFFFF, ts_ns & 0xFFFFFFFF)


class PcapngWriter:
    def __init__(self, path: str, linktype: int, iface: str, snaplen: int = 262_144) -> None:
        # Never through a symlink (a planted link must not redirect raw tokens elsewhere), and
        # 0600 even when the file existed before: it holds unredacted traffic.
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
        flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o600)
        os.fchmod(fd, 0o600)
        self._f = os.fdopen(fd, "wb", buffering=0)
        self.path = path
        self.packets = 0
        self.first_ns = 0
        self.last_ns = 0
        shb_opts = _option(4, f"wsdiag {__version__}".encode()) + _option(0, b"")
        shb = struct.pack("<IHHq", _BOM, 1, 0, -1) + shb_opts
        idb_opts = _option(2, iface.encode("utf-8", "replace")[:255]) + _option(9, b"\x09") + _option(0, b"")
        idb = struct.pack("<HHI", linktype, 0, snaplen) + idb_opts
        self._write(_block(0x0A0D0D0A, shb) + _block(1, idb))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = self._f.write(view)
            if n is None:  # pragma: no cover - only for non-blocking files
                continue
            view = view[n:]

    def write(self, data: bytes, ts_ns: int, orig_len: int | None = None) -> None:
        pad = (-len(data)) % 4
        body = struct.pack("<I", 0) + _ts(ts_ns) + struct.pack("<II", len(data), orig_len or len(data))
        self._write(_block(6, body + data + b"\0" * pad))
        self.packets += 1
        self.first_ns = self.first_ns or ts_ns
        self.last_ns = ts_ns

    def close(
        self, received: int | None = None, dropped: int | None = None, end_ns: int | None = None
    ) -> None:
        if self._f.closed:
            return
        try:
            opts = b""
            if self.first_ns:
                opts += _option(2, _ts(self.first_ns))
            opts += _option(3, _ts(end_ns or self.last_ns or 0))
            if received is not None:
                opts += _option(4, struct.pack("<Q", received))
            if dropped is not None:
                opts += _option(5, struct.pack("<Q", dropped))
            end = _ts(end_ns or self.last_ns)
            self._write(_block(5, struct.pack("<I", 0) + end + opts + _option(0, b"")))
        finally:
            self._f.close()
