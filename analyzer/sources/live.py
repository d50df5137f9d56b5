"""Live capture: a packet socket in, diagnosed handshakes out, through the same pipeline as files.

`LiveSource` opens a Linux packet socket with scapy (`conf.L2listen`, which compiles and attaches
the BPF filter with libpcap), then reads it itself with `recvmsg`: raw bytes, the kernel's
nanosecond timestamp and the packet's original length, with no scapy dissection (which costs
~400 us a packet). `LiveSession` numbers the packets as the `--write` file will (frame N in a
report is frame N in the file), decodes them with `sources.decode`, feeds a `ConnectionTable`
in live mode (each connection is reported as soon as its answers have settled or it ends) and
diagnoses, redacts and hands over one handshake at a time. Everything it keeps is bounded.
"""

from __future__ import annotations

import contextlib
import errno
import json
import select
import socket
import struct
import subprocess
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qsl

from analyzer.config import Config
from analyzer.errors import LiveError
from analyzer.limits import Limits
from analyzer.model import Handshake, InputSummary, OtaExchange, Report, Segment, TcpFlags
from analyzer.oui import is_espressif, vendor
from analyzer.pipeline import XIAOZHI_WS_PORT, ConnectionTable, ota_ports, worth_reporting
from analyzer.privileges import NEED_PRIVILEGE
from analyzer.sources.decode import AnomalyLog, decode

SNAPLEN = 262_144
SOL_PACKET = 263
PACKET_STATISTICS = 6
SCM_TIMESTAMPNS = 35
PACKET_AUXDATA = 8
SO_ATTACH_FILTER = 26
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
PACKET_OUTGOING = 4
ARPHRD_LOOPBACK = 772
ETH_P_ALL = 0x0003
SO_TIMESTAMPNS = 35
DLT_RAW = 12  # libpcap's DLT for raw IP (files say LINKTYPE 101): what a cooked socket delivers
LINKTYPE_LINUX_SLL = 113
BRIDGED_COPY_NS = 5_000_000
BRIDGED_COPIES_KEPT = 4096
RCVBUF_BYTES = 8 * 1024 * 1024
MAX_DEVICES = 4096
MAX_OTAS_KEPT = 256  # recent OTA exchanges kept to explain the WebSocket attempts that follow
MAX_OTAS_RELATED = 8  # of those, the latest from the same client go with each report
MAX_RECENT = 256  # connections reported lately: what the checks across connections compare with

# Linux ARPHRD_* (what the packet socket delivers) → pcap LINKTYPE_* (what decode and files use).
LINKTYPE_OF_ARPHRD = {
    1: 1,  # Ethernet
    772: 1,  # loopback: Linux shows it with a zeroed Ethernet header
    65534: 101,  # ARPHRD_NONE (tun, wireguard): raw IP
    519: 101,  # ARPHRD_RAWIP
    768: 101,  # ARPHRD_TUNNEL (ipip)
    769: 101,  # ARPHRD_TUNNEL6
    776: 101,  # ARPHRD_SIT
    801: 105,  # 802.11 (monitor mode, no radio header)
    802: 119,  # Prism
    803: 127,  # radiotap
}

Key = tuple[str, int, str, int]


# --------------------------------------------------------------------------------------------
# interfaces


@dataclass(slots=True)
class Interface:
    name: str
    index: int
    mac: str | None = None
    state: str = ""
    addresses: list[str] = field(default_factory=list)
    kind: int | None = None  # ARPHRD type

    @property
    def vendor(self) -> str | None:
        return vendor(self.mac) if self.mac and self.mac != "00:00:00:00:00:00" else None


def interfaces() -> list[Interface]:
    """Every interface of this network namespace, with addresses (`ip -j addr` when available)."""
    found = {name: Interface(name, index) for index, name in socket.if_nameindex()}
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, timeout=5, check=True).stdout
        for item in json.loads(out or b"[]"):
            iface = found.get(str(item.get("ifname")))
            if iface is None:
                continue
            iface.mac = item.get("address") if item.get("link_type") in ("ether", "loopback") else None
            iface.state = str(item.get("operstate", ""))
            for a in item.get("addr_info", []):
                iface.addresses.append(f"{a.get('local')}/{a.get('prefixlen')}")
    except (OSError, subprocess.SubprocessError, ValueError, TypeError, AttributeError):
        pass
    for iface in found.values():
        try:
            with open(f"/sys/class/net/{iface.name}/type", encoding="ascii") as f:
                iface.kind = int(f.read().strip())
        except (OSError, ValueError):
            pass
    return sorted(found.values(), key=lambda i: i.index)


ANY = "any"  # every interface at once, as tcpdump -i any


def check_interface(name: str) -> None:
    names = [n for _, n in socket.if_nameindex()]
    if name != ANY and name not in names:
        raise LiveError(f"no such interface {name!r} (available: {', '.join([*names, ANY])})")


def build_filter(ports: list[int], host: str | None, custom: str | None) -> str:
    """`--filter` wins; else `tcp`, narrowed by `--port` (any of them) and `--host`."""
    if custom:
        return custom
    parts = ["tcp"]
    if ports:
        parts.append("(" + " or ".join(f"port {p}" for p in ports) + ")")
    if host:
        parts.append(f"host {host}")
    return " and ".join(parts)


# --------------------------------------------------------------------------------------------
# the packet socket


@dataclass(frozen=True, slots=True)
class Captured:
    data: bytes
    ts_ns: int
    orig_len: int


class LiveSource:
    """A packet socket on one interface (or `any`) with a BPF filter. Open it before dropping
    privileges.

    `any` is read as tcpdump reads it: one cooked socket bound to no interface, whose packets
    start at the network header and are written as Linux "cooked" (SLL) records carrying the
    packet direction and the sender's link address. The filter is compiled for raw IP, which is
    what such a socket delivers. A packet bridged across interfaces (a veth and its bridge) is
    seen once per interface; copies seen on another interface within `BRIDGED_COPY_NS` are
    dropped, so they are not taken for retransmissions.
    """

    sock: socket.socket

    def __init__(self, iface: str, bpf: str, promisc: bool = True) -> None:
        check_interface(iface)
        self.iface = iface
        self.bpf = bpf
        self.any = iface == ANY
        self._copies = BridgedCopies()
        if self.any:
            self.sock = self._cooked_socket(bpf)
            self.linktype = LINKTYPE_LINUX_SLL
            self.loopback = False
        else:
            self._open_one(iface, bpf, promisc)
        for opt in (33, socket.SO_RCVBUF):  # SO_RCVBUFFORCE (root) beats rmem_max; else the capped one
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, opt, RCVBUF_BYTES)
                break
            except OSError:
                continue
        self.sock.setblocking(False)
        self._poll = select.poll()
        self._poll.register(self.sock.fileno(), select.POLLIN | select.POLLERR)
        self.received = 0
        self.dropped = 0
        self.stats_available = True
        self.stats()  # reading PACKET_STATISTICS resets it: start from zero here

    def _cooked_socket(self, bpf: str) -> socket.socket:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise LiveError(NEED_PRIVILEGE) from None
        except OSError as e:
            if e.errno in (errno.EPERM, errno.EACCES):
                raise LiveError(NEED_PRIVILEGE) from None
            raise LiveError(f"cannot capture on any: {e.strerror or e}") from None
        try:
            self._attach(sock, bpf, DLT_RAW)
        except LiveError:
            sock.close()
            raise
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        return sock

    def _open_one(self, iface: str, bpf: str, promisc: bool) -> None:
        try:
            import scapy.arch  # noqa: F401  (sets conf.L2listen for this OS)
            from scapy.config import conf
            from scapy.error import Scapy_Exception
        except ImportError as e:  # pragma: no cover - scapy is a dependency
            raise LiveError(f"scapy is needed for live capture: {e}") from None
        try:
            self._scapy = conf.L2listen(iface=iface, filter=bpf, promisc=promisc)
        except PermissionError:
            raise LiveError(NEED_PRIVILEGE) from None
        except Scapy_Exception as e:
            text = str(e)
            if "libpcap" in text or "ImportError" in text:
                raise LiveError(f"cannot compile the filter {bpf!r}: libpcap is missing ({text})") from None
            raise LiveError(f"bad capture filter {bpf!r}: {text}") from None
        except OSError as e:
            if e.errno in (errno.EPERM, errno.EACCES):
                raise LiveError(NEED_PRIVILEGE) from None
            raise LiveError(f"cannot capture on {iface!r}: {e.strerror or e}") from None
        self.sock = self._scapy.ins
        with contextlib.suppress(LiveError):  # keep scapy's filter: packets over 65,535 bytes are cut
            self._attach(self.sock, bpf, None)
        hatype = self.sock.getsockname()[3]
        linktype = LINKTYPE_OF_ARPHRD.get(hatype)
        if linktype is None:
            self.close()
            raise LiveError(f"{iface!r}: interface type {hatype} (ARPHRD) is not supported for live capture")
        self.linktype = linktype
        self.loopback = hatype == ARPHRD_LOOPBACK

    def _attach(self, sock: socket.socket, bpf: str, dlt: int | None) -> None:
        """Compiles `bpf` with libpcap (for `dlt`, else for this interface) and attaches it so
        that it keeps whole packets (up to SNAPLEN): scapy compiles with a 65,535-byte snapshot
        length, and the filter's accepting `ret` truncates to it, so a GRO/GSO packet of 64 KiB
        plus its link header would lose its tail."""
        try:
            import ctypes

            from scapy.arch.common import compile_filter, free_filter
            from scapy.libs.structures import sock_fprog

            prog = compile_filter(bpf, None if dlt is not None else self.iface, linktype=dlt)
        except Exception as e:  # libpcap's message (via scapy) is the one to show
            raise LiveError(f"bad capture filter {bpf!r}: {e}") from None
        try:
            for i in range(prog.bf_len):
                insn = prog.bf_insns[i]
                if insn.code == 0x06 and insn.k > 0:  # BPF_RET|BPF_K: accept, keeping k bytes
                    insn.k = SNAPLEN
            fprog = sock_fprog(prog.bf_len, prog.bf_insns)
            sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(ctypes.string_at(
                ctypes.addressof(fprog), ctypes.sizeof(fprog))))
        except OSError as e:
            raise LiveError(f"cannot attach the filter {bpf!r}: {e.strerror or e}") from None
        finally:
            free_filter(prog)

    def read(self, timeout_s: float, batch: int = 512) -> list[Captured]:
        """Packets waiting now, or within `timeout_s`. Raises LiveError if the interface goes away."""
        try:
            if not self._poll.poll(max(0, int(timeout_s * 1000))):
                return []
        except InterruptedError:  # pragma: no cover - PEP 475 retries; kept for safety
            return []
        out: list[Captured] = []
        recvmsg = self.sock.recvmsg
        space = socket.CMSG_SPACE(16) + socket.CMSG_SPACE(20)
        for _ in range(batch):
            try:
                data, anc, _flags, addr = recvmsg(SNAPLEN, space)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno in (errno.ENETDOWN, errno.ENODEV, errno.ENXIO):
                    raise LiveError(f"interface {self.iface!r} went down") from None
                raise LiveError(f"capture on {self.iface!r} failed: {e.strerror or e}") from None
            if (self.loopback or (self.any and addr[0] == "lo")) and addr[2] == PACKET_OUTGOING:
                continue  # lo shows every packet twice (out, then in): keep one, as libpcap does
            ts_ns = 0
            orig_len = len(data)
            for level, kind, value in anc:
                if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(value) >= 16:
                    sec, nsec = struct.unpack_from("qq", value)
                    ts_ns = sec * 1_000_000_000 + nsec
                elif level == SOL_PACKET and kind == PACKET_AUXDATA and len(value) >= 20:
                    status, tp_len, _snap, _mac, _net, tci, tpid = struct.unpack_from("IIIHHHH", value)
                    orig_len = max(tp_len, len(data))
                    if status & TP_STATUS_VLAN_VALID and self.linktype == 1 and len(data) >= 12:
                        tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
                        data = data[:12] + struct.pack("!HH", tpid, tci) + data[12:]
                        orig_len += 4
            ts_ns = ts_ns or time.time_ns()
            if self.any:
                if self._copies.seen(data, addr[0], ts_ns):
                    continue
                data, orig_len = _cooked(addr, data), orig_len + _SLL_LEN
            out.append(Captured(data, ts_ns, orig_len))
        return out

    def stats(self) -> tuple[int, int] | None:
        """Cumulative (received, dropped) by the kernel for this socket, or None if unavailable."""
        if not self.stats_available:
            return None
        try:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        except OSError:
            self.stats_available = False
            return None
        packets, drops = struct.unpack("II", raw)
        self.received += packets
        self.dropped += drops
        return self.received, self.dropped

    def close(self) -> None:
        with contextlib.suppress(OSError):
            if self.any:
                self.sock.close()
            else:
                self._scapy.close()


class BridgedCopies:
    """`any` sees a bridged packet once per interface it crosses (a veth, then its bridge): the
    same network-layer bytes on another interface within `BRIDGED_COPY_NS` are such a copy. A
    retransmission comes on the same interface, and later than that. Bounded."""

    def __init__(self, kept: int = BRIDGED_COPIES_KEPT) -> None:
        self._kept = kept
        self._recent: OrderedDict[int, tuple[str, int]] = OrderedDict()

    def seen(self, data: bytes, ifname: str, ts_ns: int) -> bool:
        key = hash(data)
        last = self._recent.get(key)
        if last is not None and last[0] != ifname and 0 <= ts_ns - last[1] <= BRIDGED_COPY_NS:
            return True
        self._recent[key] = (ifname, ts_ns)
        self._recent.move_to_end(key)
        if len(self._recent) > self._kept:
            self._recent.popitem(last=False)
        return False


_SLL_LEN = 16


def _cooked(addr: tuple[Any, ...], data: bytes) -> bytes:
    """A Linux cooked (SLL, LINKTYPE 113) record of a cooked socket's packet: direction, link
    type, the sender's link address and the protocol, then the network-layer bytes."""
    _ifname, proto, pkttype, hatype, hw = addr[:5]
    hw = bytes(hw[:8])
    return struct.pack("!HHH8sH", pkttype, hatype, len(hw), hw, proto) + data


# --------------------------------------------------------------------------------------------
# devices


@dataclass(slots=True)
class Device:
    ip: str
    mac: str | None
    vendor: str | None
    espressif: bool
    device_id: str | None = None
    attempts: int = 0
    failed: int = 0
    otas: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    causes: Counter[str] = field(default_factory=Counter)
    last_seen: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "mac": self.mac,
            "vendor": self.vendor,
            "espressif": self.espressif,
            "device_id": self.device_id,
            "attempts": self.attempts,
            "failed": self.failed,
            "ota": self.otas,
            "outcomes": dict(self.outcomes),
            "causes": dict(self.causes),
            "last_seen": self.last_seen,
        }


def claimed_device_id(request: dict[str, Any] | None) -> str | None:
    """The Device-Id a client claims: its header, else the `device-id` query parameter (browsers)."""
    if request is None:
        return None
    for name, value in request["headers"]:
        if name.lower() == "device-id":
            return str(value)
    for name, value in parse_qsl(str(request["target"]).partition("?")[2].partition("#")[0]):
        if name.lower() == "device-id":
            return value
    return None


class Devices:
    """Clients seen, by MAC (by IP when the link has no MAC); the least recently seen go first."""

    def __init__(self, limit: int = MAX_DEVICES) -> None:
        self.limit = limit
        self.by_key: OrderedDict[str, Device] = OrderedDict()

    def get(self, ip: str, mac: str | None) -> Device:
        usable = mac if mac and mac != "00:00:00:00:00:00" else None
        key = usable or ip
        dev = self.by_key.get(key)
        if dev is None:
            dev = Device(ip, usable, vendor(usable), is_espressif(usable))
            self.by_key[key] = dev
            if len(self.by_key) > self.limit:
                self.by_key.popitem(last=False)
        else:
            self.by_key.move_to_end(key)
            dev.ip = ip
        return dev

    def handshake(self, h: dict[str, Any]) -> None:
        ip = h["client"].rsplit(":", 1)[0].strip("[]")
        dev = self.get(ip, h["client_mac"])
        dev.attempts += 1
        dev.outcomes[h["outcome"]] += 1
        dev.failed += bool(h["failed"])
        if h["cause"]:
            dev.causes[h["cause"]["name"]] += 1
        dev.device_id = claimed_device_id(h["request"]) or dev.device_id
        dev.last_seen = h["start"]

    def ota(self, o: OtaExchange, cause: str | None) -> None:
        dev = self.get(o.client.ip, o.client_mac)
        dev.otas += 1
        dev.device_id = o.request.header("Device-Id") or dev.device_id
        if cause:
            dev.failed += 1
            dev.causes[cause] += 1

    def listed(self, esp32_only: bool = False) -> list[Device]:
        return [d for d in self.by_key.values() if d.espressif or not esp32_only]


# --------------------------------------------------------------------------------------------
# the session


Emit = Callable[[dict[str, Any]], None]


class LiveSession:
    """Turns captured packets into reported handshakes, one connection at a time."""

    def __init__(
        self,
        name: str,
        config: Config,
        limits: Limits,
        emit: Emit,
        ports: tuple[int, ...] = (),
        esp32_only: bool = False,
        show_secrets: bool = False,
    ) -> None:
        from analyzer.rules import diagnose, diagnose_otas  # now: after a privilege drop it may be unreadable

        self._diagnose = diagnose
        self._diagnose_otas = diagnose_otas
        self.config = config
        self.limits = limits
        self.emit = emit
        self.esp32_only = esp32_only
        self.show_secrets = show_secrets
        self.summary = InputSummary(name, format="live")
        self.anomalies = AnomalyLog(self.summary.anomalies, limits)
        self.table = ConnectionTable(limits, on_done=self._finished)
        self.frame = 0
        self.otas: deque[OtaExchange] = deque(maxlen=MAX_OTAS_KEPT)
        self.recent: deque[Handshake] = deque(maxlen=MAX_RECENT)
        self.reported: OrderedDict[Key, None] = OrderedDict()
        self.ports: set[int] = {*ports, XIAOZHI_WS_PORT}  # as `analyze` chooses what to report
        if config.expect_port:
            self.ports.add(config.expect_port)
        self.devices = Devices()
        self.handshakes = 0
        self.failed = 0
        self.ota_failed = 0
        self.causes: Counter[str] = Counter()
        self.skipped_not_esp32 = 0

    def packet(self, linktype: int, data: bytes, ts_ns: int) -> None:
        self.frame += 1
        self.summary.packets += 1
        self.summary.bytes_read += len(data)
        seg = decode(linktype, data, self.frame, ts_ns, self.anomalies)
        if seg is None:
            return
        self.summary.tcp_segments += 1
        if self._after_report(seg):
            return
        self.table.feed(seg)

    def _after_report(self, seg: Segment) -> bool:
        """Packets of a connection already reported (a WebSocket session going on) are not re-tracked."""
        if not self.reported:
            return False
        key = (seg.src.ip, seg.src.port, seg.dst.ip, seg.dst.port)
        rkey = (seg.dst.ip, seg.dst.port, seg.src.ip, seg.src.port)
        hit = key if key in self.reported else rkey if rkey in self.reported else None
        if hit is None:
            return False
        if seg.flags & (TcpFlags.SYN | TcpFlags.ACK) == TcpFlags.SYN:
            del self.reported[hit]  # port reuse: a new connection
            return False
        self.reported.move_to_end(hit)
        return True

    def tick(self, now_ns: int) -> None:
        """Wall-clock time moves on without packets: let quiet connections settle or time out."""
        if now_ns > self.table.now_ns:
            self.table.now_ns = now_ns
        self.table.sweep()

    def finish(self) -> None:
        self.table.flush()

    def _remember(self, client: Any, server: Any) -> None:
        key = (client.ip, client.port, server.ip, server.port)
        self.reported[key] = None
        self.reported.move_to_end(key)
        while len(self.reported) > self.limits.max_flows:
            self.reported.popitem(last=False)

    def _finished(self, handshakes: list[Handshake], otas: list[OtaExchange]) -> None:
        from analyzer.report import tree

        shown = []
        for od in self._diagnose_otas(otas, handshakes, self.config) if otas else ():
            o = od.exchange
            self.otas.append(o)
            self._remember(o.client, o.server)
            if self.esp32_only and not is_espressif(o.client_mac):
                continue
            self.devices.ota(o, od.cause.name if od.cause else None)
            shown.append(od)
            if od.cause is not None:  # the OTA check itself refused the device: a failure, as in `analyze`
                self.ota_failed += 1
                self.causes[od.cause.name] += 1
        if shown:  # the device's check-in, printed as `analyze` prints it (redacted the same way)
            for doc in tree.ota_docs([Report(self.summary, [], shown)], self.show_secrets):
                self.emit({"kind": "ota", **doc})
        for h in handshakes:
            self._remember(h.client, h.server)
            if h.request is not None:
                self.ports.add(h.server.port)
        self.ports |= ota_ports(otas)
        done = self.table.harvest.tls_completed  # the connections finished so far
        chosen = [h for h in handshakes if worth_reporting(h, self.ports, self.config.expect_port, done)]
        earlier = list(self.recent)
        self.recent.extend(chosen)  # before the --esp32 filter: the network, not the display
        if self.esp32_only:
            kept = [h for h in chosen if is_espressif(h.client_mac)]
            self.skipped_not_esp32 += len(chosen) - len(kept)
            chosen = kept
        if not chosen:
            return
        clients = {h.client.ip for h in chosen}
        related = [o for o in self.otas if o.client.ip in clients][-MAX_OTAS_RELATED:]
        diagnoses = self._diagnose(chosen, related, self.config, context=earlier)
        report = Report(self.summary, diagnoses, self._diagnose_otas(related, chosen, self.config))
        for hd in tree.handshake_docs([report], self.show_secrets):
            self.handshakes += 1
            if hd["failed"]:
                self.failed += 1
            if hd["cause"]:
                self.causes[hd["cause"]["name"]] += 1
            self.devices.handshake(hd)
            self.emit({"kind": "handshake", **hd})


# --------------------------------------------------------------------------------------------
# the loop


@dataclass(slots=True)
class Stop:
    """Why the capture ended: set by a signal handler, a limit, or an error."""

    reason: str | None = None  # "SIGINT", "SIGTERM", "duration", "count", "error", "pipe"
    error: str | None = None


class PacketSink(Protocol):
    """Where captured packets go before decoding (the `--write` file)."""

    def write(self, data: bytes, ts_ns: int, orig_len: int | None = None) -> None: ...


def run(
    source: LiveSource,
    session: LiveSession,
    stop: Stop,
    writer: PacketSink | None = None,
    duration_s: float | None = None,
    count: int | None = None,
    on_tick: Callable[[], None] | None = None,
) -> None:
    """Captures until `stop.reason` is set (by a signal, `duration_s`, `count`, or an error)."""
    start = time.monotonic()
    deadline = start + duration_s if duration_s else None
    next_tick = start + 1.0
    while stop.reason is None:
        now = time.monotonic()
        wait = min(0.25, max(0.0, next_tick - now))
        if deadline is not None:
            wait = min(wait, max(0.0, deadline - now))
        try:
            packets = source.read(wait)
        except LiveError as e:
            stop.reason, stop.error = "error", str(e)
            break
        for p in packets:
            if writer is not None:
                try:
                    writer.write(p.data, p.ts_ns, p.orig_len)
                except OSError as e:
                    stop.reason = "error"
                    stop.error = f"cannot write the capture file: {e.strerror or e}"
                    break
            session.packet(source.linktype, p.data, p.ts_ns)
            if count is not None and session.frame >= count:
                stop.reason = "count"
                break
            if stop.reason is not None:
                break
        now = time.monotonic()
        if now >= next_tick:
            next_tick = now + 1.0
            session.tick(time.time_ns())
            if on_tick is not None:
                on_tick()
        if stop.reason is None and deadline is not None and now >= deadline:
            stop.reason = "duration"

