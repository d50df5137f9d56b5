"""Where the stages meet: segments → connections → handshakes → diagnoses. No I/O here.

`ConnectionTable` owns the live `Conversation`s (bounded, expired by capture time, evicted when
full) and numbers them like tshark's `tcp.stream`. `analyze_segments` drives a table over any
iterable of `Segment`s — a file or a live interface — and hands the results to the rules.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from analyzer.handshake import Conversation
from analyzer.limits import DEFAULT_LIMITS, Limits
from analyzer.model import Anomaly, Endpoint, Handshake, OtaExchange, Payload, Segment, Transport
from analyzer.tls.session import fatal_alert
from analyzer.tls.session import handshake_failed as tls_handshake_failed

MAX_TLS_COMPLETED = 65536

Key = tuple[str, int, str, int]


@dataclass(slots=True)
class Harvest:
    """What finished connections gave: handshakes, OTA exchanges, and silent failed connections."""

    handshakes: list[Handshake] = field(default_factory=list)
    otas: list[OtaExchange] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    connections: int = 0
    tls_sessions: int = 0
    # (client address, server) pairs that completed a TLS handshake: a client that walks away
    # from another handshake with the same server did not refuse its certificate (a browser's
    # spare or preconnected socket). Bounded: past the limit, no more are added.
    tls_completed: set[tuple[str, Endpoint]] = field(default_factory=set)

    def finished(self, client: Endpoint, server: Endpoint, transport: Transport) -> None:
        """Counts a finished connection (either engine) and what its TLS showed."""
        self.connections += 1
        if transport.client_payload is Payload.TLS and transport.tls_server_hello:
            self.tls_sessions += 1
        tls = transport.tls
        room = len(self.tls_completed) < MAX_TLS_COMPLETED
        if tls is not None and (tls.completed or tls.decrypted) and room:
            self.tls_completed.add((client.ip, server))


class ConnectionTable:
    """Tracks TCP connections in capture-time order of last activity (an LRU), within limits."""

    def __init__(
        self,
        limits: Limits = DEFAULT_LIMITS,
        on_done: Callable[[list[Handshake], list[OtaExchange]], None] | None = None,
    ) -> None:
        self.limits = limits
        self.table: OrderedDict[Key, Conversation] = OrderedDict()
        self.next_stream = 0
        self.now_ns = 0
        self.on_done = on_done
        self.harvest = Harvest()
        self._since_sweep = 0
        self._evicted = 0
        self._not_kept = 0  # handshakes and OTA exchanges past `limits.max_handshakes`
        self._limit_note: int | None = None  # where the handshake-limit anomaly is, once made
        self.on_close: Callable[[Conversation], None] | None = None  # told of every finished one

    def feed(self, seg: Segment) -> Conversation:
        """Feeds one segment to its connection (made if new) and returns that connection."""
        if seg.ts_ns > self.now_ns:
            self.now_ns = seg.ts_ns
        key = (seg.src.ip, seg.src.port, seg.dst.ip, seg.dst.port)
        conv = self.table.get(key)
        if conv is None:
            conv = self.table.get((seg.dst.ip, seg.dst.port, seg.src.ip, seg.src.port))
            if conv is not None:
                key = (conv.a.ip, conv.a.port, conv.b.ip, conv.b.port)
        if conv is not None and conv.wants_new_stream(seg):
            self._done(key)
            conv = None
        if conv is None:
            key = (seg.src.ip, seg.src.port, seg.dst.ip, seg.dst.port)
            conv = Conversation(self.next_stream, seg, self.limits)
            self.next_stream += 1
            self.table[key] = conv
            if len(self.table) > self.limits.max_flows:
                self._evict()
        else:
            self.table.move_to_end(key)
        conv.feed(seg)
        self._since_sweep += 1
        if self._since_sweep >= 1024:
            self.sweep()
        return conv

    def sweep(self) -> None:
        """Finishes connections idle for longer than their timeout, in capture time."""
        self._since_sweep = 0
        idle = int(self.limits.idle_timeout_s * 1e9)
        half_open = int(self.limits.syn_timeout_s * 1e9)
        while self.table:
            key, conv = next(iter(self.table.items()))
            quiet = self.now_ns - conv.last_ns
            limit = half_open if conv.closed_both or (not conv.upgraded and not conv.attempts) else idle
            if quiet <= min(limit, idle):
                break
            self._done(key)
        if self.on_done is not None:  # live: report answered attempts without waiting for the close
            ready = [key for key, conv in self.table.items() if conv.attempts and conv.ready(self.now_ns)]
            for key in self._in_answer_order(ready):
                self._done(key)

    def flush(self) -> None:
        keys = list(self.table)
        for key in self._in_answer_order(keys) if self.on_done is not None else keys:
            self._done(key)

    def _in_answer_order(self, keys: list[Key]) -> list[Key]:
        """Live mode reports connections in the order they were answered: a proxy's upstream
        leg (answered first, by the backend) then comes before the client's leg it explains."""
        table = self.table
        return sorted(keys, key=lambda k: (table[k].answered_ns, table[k].tcp_stream))

    def _evict(self) -> None:
        self._evicted += 1
        if self._evicted == 1:
            self.harvest.anomalies.append(
                Anomaly(
                    "flow-table-full",
                    f"more than {self.limits.max_flows} open connections; oldest closed early",
                )
            )
        self._done(next(iter(self.table)))

    def _done(self, key: Key) -> None:
        conv = self.table.pop(key)
        if self.on_close is not None:
            self.on_close(conv)
        handshakes, otas, transport = conv.finish()
        h = self.harvest
        h.finished(*conv.roles(), transport)
        if self.on_done is not None:  # live mode: reported right away, not kept (a capture may run for weeks)
            self.on_done(handshakes, otas)
            return
        room = self.limits.max_handshakes - len(h.handshakes) - len(h.otas)
        if len(handshakes) + len(otas) > room:  # a reconnect storm or a scan: keep the first ones
            self._not_kept += len(handshakes) + len(otas) - max(room, 0)
            handshakes, otas = handshakes[: max(room, 0)], otas[: max(room - len(handshakes), 0)]
            detail = (
                f"more than {self.limits.max_handshakes} handshakes and OTA exchanges; "
                f"{self._not_kept} later ones not kept (--limit max_handshakes=N)"
            )
            if self._limit_note is None:
                self._limit_note = len(h.anomalies)
                h.anomalies.append(Anomaly("handshake-limit", detail))
            else:
                h.anomalies[self._limit_note] = Anomaly("handshake-limit", detail)
        h.handshakes.extend(handshakes)
        h.otas.extend(otas)


def worth_reporting(
    hs: Handshake,
    attempt_ports: set[int],
    expect_port: int | None,
    tls_completed: AbstractSet[tuple[str, Endpoint]] = frozenset(),
) -> bool:
    """Connections with no HTTP at all are reported only where a WebSocket was expected.

    A capture is full of failed TCP connections that have nothing to do with WebSockets; a SYN
    that was never answered matters only on a port where upgrade attempts happen (seen in this
    capture, announced by an OTA answer, xiaozhi's default 8000, or named with --expect-port).
    TLS handshakes that visibly failed (an alert, or a plaintext answer) are always reported.
    """
    if hs.request is not None or hs.response is not None:
        return True
    t = hs.transport
    if t.client_payload is Payload.TLS and (t.tls_alert is not None or t.server_payload is Payload.OTHER):
        return True  # a TLS handshake that visibly failed (an alert, or a non-TLS answer)
    if t.tls is not None and tls_handshake_failed(t.tls):
        # an encrypted TLS 1.3 alert, or a client that left after the certificate: unless it
        # completed TLS with this server on another connection (Chromium's spare socket)
        return fatal_alert(t.tls) is not None or (hs.client.ip, hs.server) not in tls_completed
    return hs.server.port in attempt_ports or hs.server.port == expect_port


def ota_ports(otas: Iterable[OtaExchange]) -> set[int]:
    """Ports of the WebSocket URLs that OTA answers handed out (a device connects there next)."""
    import json
    from urllib.parse import urlsplit

    ports: set[int] = set()
    for ota in otas:
        if ota.response is None:
            continue
        try:
            url = json.loads(ota.response.body.decode("utf-8", "replace"))["websocket"]["url"]
            parts = urlsplit(str(url))
            ports.add(parts.port or (443 if parts.scheme == "wss" else 80))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return ports


XIAOZHI_WS_PORT = 8000  # xiaozhi-esp32-server's default WebSocket port


def select_handshakes(harvest: Harvest, expect_port: int | None) -> list[Handshake]:
    ports = {h.server.port for h in harvest.handshakes if h.request is not None} | ota_ports(harvest.otas)
    ports.add(XIAOZHI_WS_PORT)
    chosen = [h for h in harvest.handshakes if worth_reporting(h, ports, expect_port, harvest.tls_completed)]
    chosen.sort(key=lambda h: (h.tcp_stream, h.request.ts_ns if h.request else 0))
    return chosen


def analyze_segments(segments: Iterable[Segment], limits: Limits = DEFAULT_LIMITS) -> Harvest:
    table = ConnectionTable(limits)
    for seg in segments:
        table.feed(seg)
    table.flush()
    return table.harvest

