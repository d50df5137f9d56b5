"""The tool's own failures. Malformed *traffic* is never an exception: it is data (anomalies).

    WsdiagError
    ├── CaptureError   the input cannot be read at all (exit 2, one line)
    ├── LiveError      a live capture cannot start (no privilege, no such interface)
    └── UsageError     flags or a config file that make no sense
"""

from __future__ import annotations


class WsdiagError(Exception):
    """Base class: the message is one line meant for the user, with a hint where one helps."""


class CaptureError(WsdiagError):
    pass


class LiveError(WsdiagError):
    pass


class UsageError(WsdiagError):
    pass
