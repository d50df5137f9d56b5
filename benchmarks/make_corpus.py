#!/usr/bin/env python3
# ruff: noqa
# Copied from ../shared/bench/make_corpus.py (the shared benchmark corpus generator of this
# project, standard library only), so that benchmarks/bench.py and tests/test_fastpath.py can make
# the same seeded corpora from inside the repository. One change: client ports are unique per
# client address, not across the capture (`eph`), so that corpora beyond ~1.6 GB can be made (the
# random draws then differ from the shared generator's at the first port collision, so the same
# seed and size make a different, equally valid corpus).
"""Deterministic benchmark capture generator (pcap or pcapng, Ethernet/IPv4).

Writes a capture of roughly --size-mb megabytes (10^6 bytes) in which most
bytes are bulk non-HTTP traffic, with a few hundred HTTP WebSocket upgrade
handshakes (GET /xiaozhi/v1/ ...) hidden among it, and a ground-truth
sidecar JSON (<out>.truth.json).

Traffic mix (fractions of the target size, approximate):
  * ~70 %  TCP "downloads": server->client MSS-sized segments, ACK every 2;
           half on 443 carrying TLS application-data records (random bytes),
           half raw random bytes on high ports.
  * ~15 %  TCP "audio uploads": 320..960-byte segments every 20..60 ms.
  *  ~5 %  mid-stream WebSocket audio on port 8000 (no SYN, no handshake in
           the capture: the session began before the capture did).
  *  ~8 %  UDP RTP (172-byte payloads every 20 ms) plus a little DNS.
  * the rest: WebSocket handshakes and plain HTTP (OTA POST, GET /healthz)
           on ports 8000 (most), 80 and 8080.

WebSocket handshakes: client GET /xiaozhi/v1/ with Host, Upgrade,
Connection, Sec-WebSocket-Key, Sec-WebSocket-Version, Device-Id (MAC),
Client-Id (UUID), Authorization: Bearer ..., Protocol-Version; then
"101 Switching Protocols" (with a correct Sec-WebSocket-Accept) followed by
a few WebSocket frames and a close, or "403 Forbidden" and a FIN, or no
response at all.  Some requests are split over 2 or 3 TCP segments, some
have one segment retransmitted (duplicate, same seq), a few split ones have
their last two segments out of order; some use lower-case header names or
"Upgrade: WebSocket".  Small frames in the server->client direction are
padded to the 60-byte Ethernet minimum (so the IP total length, not the
frame length, gives the payload length).  IP and TCP/UDP checksums are
correct.

Everything is drawn from random.Random(seed): the same arguments give the
same bytes.  Plain struct writing; standard library only.

Usage:
  python3 make_corpus.py --size-mb 200 --format pcap --out corpus-200.pcap
"""
import argparse
import base64
import hashlib
import heapq
import json
import random
import struct
import sys
import time
import uuid
from operator import itemgetter

WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10
EPOCH = 1735689600.0  # 2025-01-01T00:00:00Z
WS_PORTS = [8000] * 8 + [80, 8080]

_pack_tcp = struct.Struct("!HHIIBBHHH").pack
_pack_ip = struct.Struct("!BBHHHBBH4s4s").pack
_pack_udp = struct.Struct("!HHHH").pack
_pack_pseudo = struct.Struct("!BBH").pack


def csum(b):
    """Internet checksum (RFC 1071) in network order.

    The one's-complement sum of 16-bit big-endian words is congruent to the
    big-endian integer value modulo 0xFFFF (2**16 == 1 mod 0xFFFF)."""
    if len(b) & 1:
        b += b"\0"
    return (~(int.from_bytes(b, "big") % 0xFFFF)) & 0xFFFF


class Host:
    __slots__ = ("ip", "mac", "ipid", "name")

    def __init__(self, ip, mac, rng, name=""):
        self.ip = bytes(int(x) for x in ip.split("."))
        self.mac = mac
        self.ipid = rng.getrandbits(16)
        self.name = ip


def ip_str(b):
    return ".".join(str(x) for x in b)


def ip_packet(src, dst, l2, proto, l4, pad):
    src.ipid = (src.ipid + 1) & 0xFFFF
    total = 20 + len(l4)
    h = _pack_ip(0x45, 0, total, src.ipid, 0x4000, 64, proto, 0, src.ip, dst.ip)
    h = h[:10] + csum(h).to_bytes(2, "big") + h[12:]
    frame = l2 + h + l4
    if pad and len(frame) < 60:
        frame += b"\0" * (60 - len(frame))
    return frame


class TcpConn:
    """One TCP connection; c2s True = client->server."""

    def __init__(self, rng, cli, srv, cport, sport, ts_opt, l2c, l2s):
        self.cli, self.srv = cli, srv
        self.cport, self.sport = cport, sport
        self.nxt = {True: rng.getrandbits(32), False: rng.getrandbits(32)}
        self.isn = dict(self.nxt)
        self.ts_opt = ts_opt
        self.tsoff = {True: rng.getrandbits(31), False: rng.getrandbits(31)}
        self.l2 = {True: l2c, False: l2s}  # l2[c2s] = Ethernet header
        if ts_opt:  # window scale 7 negotiated (both SYNs carry it)
            self.win = {True: rng.choice([502, 501, 1024]), False: rng.choice([509, 510, 2048])}
        else:  # no window scaling
            self.win = {True: rng.choice([64240, 65535, 29200]), False: rng.choice([64240, 65535])}
        self.last_tsval = {True: 0, False: 0}

    def pkt(self, t, c2s, flags, payload=b"", seq=None):
        if seq is None:
            seq = self.nxt[c2s]
            self.nxt[c2s] = (seq + len(payload) + (1 if flags & (SYN | FIN) else 0)) & 0xFFFFFFFF
        ack = self.nxt[not c2s] if flags & ACK else 0
        tsval = (int(t * 1000) + self.tsoff[c2s]) & 0xFFFFFFFF
        self.last_tsval[c2s] = tsval
        tsecr = self.last_tsval[not c2s]
        if flags & SYN:
            if self.ts_opt:
                opts = (b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + tsval.to_bytes(4, "big")
                        + (tsecr if flags & ACK else 0).to_bytes(4, "big") + b"\x01\x03\x03\x07")
            else:
                opts = b"\x02\x04\x05\xb4"
            win = 64240 if not (flags & ACK) else 65160
        else:
            opts = (b"\x01\x01\x08\x0a" + tsval.to_bytes(4, "big") + tsecr.to_bytes(4, "big")) if self.ts_opt else b""
            win = self.win[c2s]
        if c2s:
            src, dst, sp, dp = self.cli, self.srv, self.cport, self.sport
        else:
            src, dst, sp, dp = self.srv, self.cli, self.sport, self.cport
        hl = 20 + len(opts)
        hdr = _pack_tcp(sp, dp, seq, ack, (hl // 4) << 4, flags, win, 0, 0) + opts
        tcp_len = hl + len(payload)
        c = csum(src.ip + dst.ip + _pack_pseudo(0, 6, tcp_len) + hdr + payload)
        seg = hdr[:16] + c.to_bytes(2, "big") + hdr[18:] + payload
        return ip_packet(src, dst, self.l2[c2s], 6, seg, pad=not c2s)


def udp_frame(src, dst, l2, sp, dp, payload, pad):
    ulen = 8 + len(payload)
    c = csum(src.ip + dst.ip + _pack_pseudo(0, 17, ulen) + _pack_udp(sp, dp, ulen, 0) + payload)
    if c == 0:
        c = 0xFFFF
    return ip_packet(src, dst, l2, 17, _pack_udp(sp, dp, ulen, c) + payload, pad)


# --------------------------------------------------------------------------
# Payload helpers


class Pool:
    """Deterministic random bytes, sliced for bulk payloads."""

    BAD = (b"GET ", b"HTTP", b"POST", b"PUT ", b"HEAD")

    def __init__(self, rng, size=8 << 20):
        self.data = rng.randbytes(size)
        self.size = size

    def take(self, rng, n):
        while True:
            off = rng.randrange(0, self.size - n)
            b = self.data[off:off + n]
            if b[:4] not in self.BAD:
                return b


def ws_frame(opcode, payload, mask_key=None):
    n = len(payload)
    b0 = 0x80 | opcode
    m = 0x80 if mask_key is not None else 0
    if n < 126:
        h = bytes((b0, m | n))
    elif n < 65536:
        h = bytes((b0, m | 126)) + n.to_bytes(2, "big")
    else:
        h = bytes((b0, m | 127)) + n.to_bytes(8, "big")
    if mask_key is None:
        return h + payload
    k = (mask_key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big") if n else b""
    return h + mask_key + masked


def rand_mac(rng, oui=None):
    if oui is None:
        oui = bytes((rng.getrandbits(8) & 0xFC | 0x02, rng.getrandbits(8), rng.getrandbits(8)))
    return oui + rng.randbytes(3)


ESP_OUIS = [bytes.fromhex(x) for x in ("240ac4", "7cdfa1", "a0764e", "34855d", "f412fa", "dcda0c")]


def mac_str(m):
    return ":".join("%02x" % x for x in m)


def jwt_like(rng):
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    head = b64(b'{"alg":"HS256","typ":"JWT"}')
    body = b64(('{"sub":"%s","exp":%d,"scope":"device"}' % (uuid.UUID(int=rng.getrandbits(128), version=4),
                                                            1735689600 + rng.randrange(10 ** 7))).encode())
    return "%s.%s.%s" % (head, body, b64(rng.randbytes(32)))


# --------------------------------------------------------------------------
# Flow generators: each yields (t, frame, tag) in non-decreasing t


def flush(pending, t):
    """Yield the delayed frames (ACKs) of a flow that are due by time t."""
    while pending and pending[0][0] <= t:
        yield heapq.heappop(pending)


def ws_handshake_flow(rng, hs, conn, t):
    rtt = hs["_rtt"]
    tag = hs["id"]
    yield t, conn.pkt(t, True, SYN), None
    t += rtt / 2
    yield t, conn.pkt(t, False, SYN | ACK), None
    t += rtt / 2
    yield t, conn.pkt(t, True, ACK), None
    t += rng.uniform(0.0005, 0.004)
    req = hs["_request"]
    # request segments, possibly split, out of order, retransmitted
    cuts = hs["_cuts"]
    bounds = [0] + cuts + [len(req)]
    base = conn.nxt[True]
    segs = [(base + bounds[i], req[bounds[i]:bounds[i + 1]]) for i in range(len(bounds) - 1)]
    conn.nxt[True] = (base + len(req)) & 0xFFFFFFFF
    order = list(range(len(segs)))
    if hs["out_of_order"]:
        order[-1], order[-2] = order[-2], order[-1]
    for k in order:
        seq, p = segs[k]
        fl = ACK | (PSH if k == len(segs) - 1 else 0)
        yield t, conn.pkt(t, True, fl, p, seq=seq & 0xFFFFFFFF), ("req", tag)
        t += rng.uniform(0.0001, 0.003)
    if hs["retransmitted"]:
        k = hs["_retx_seg"]
        t += rng.uniform(0.2, 0.45)  # RTO
        seq, p = segs[k]
        fl = ACK | (PSH if k == len(segs) - 1 else 0)
        yield t, conn.pkt(t, True, fl, p, seq=seq & 0xFFFFFFFF), ("retx", tag)
    t += rtt / 2
    yield t, conn.pkt(t, False, ACK), None
    status = hs["status"]
    if status is None:
        t += rng.uniform(5, 10)  # client gives up
        yield t, conn.pkt(t, True, FIN | ACK), None
        t += rtt / 2
        yield t, conn.pkt(t, False, FIN | ACK), None
        t += rtt / 2
        yield t, conn.pkt(t, True, ACK), None
        return
    t += rng.uniform(0.0005, 0.02)
    yield t, conn.pkt(t, False, ACK | PSH, hs["_response"]), ("resp", tag)
    if status == 403:
        t += 0.0002
        yield t, conn.pkt(t, False, FIN | ACK), None
        t += rtt / 2
        yield t, conn.pkt(t, True, ACK), None
        t += rng.uniform(0.001, 0.01)
        yield t, conn.pkt(t, True, FIN | ACK), None
        t += rtt / 2
        yield t, conn.pkt(t, False, ACK), None
        return
    # 101: a few WebSocket frames
    t += rtt / 2
    mk = rng.randbytes
    hello = ('{"type":"hello","version":%d,"transport":"websocket","audio_params":'
             '{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}'
             % hs["protocol_version"]).encode()
    yield t, conn.pkt(t, True, ACK | PSH, ws_frame(1, hello, mk(4))), ("ws", tag)
    t += rtt / 2 + rng.uniform(0.001, 0.01)
    shello = ('{"type":"hello","transport":"websocket","session_id":"%s","audio_params":'
              '{"format":"opus","sample_rate":24000,"channels":1,"frame_duration":60}}'
              % uuid.UUID(int=rng.getrandbits(128), version=4).hex[:8]).encode()
    yield t, conn.pkt(t, False, ACK | PSH, ws_frame(1, shello)), ("ws", tag)
    for i in range(hs["_nbin"]):
        t += 0.06 * rng.uniform(0.8, 1.2)
        c2s = rng.random() < 0.6
        p = rng.randbytes(rng.randrange(40, 200))
        yield t, conn.pkt(t, c2s, ACK | PSH, ws_frame(2, p, mk(4) if c2s else None)), ("ws", tag)
    t += rng.uniform(0.05, 0.5)
    yield t, conn.pkt(t, True, ACK | PSH, ws_frame(8, b"\x03\xe8", mk(4))), ("ws", tag)
    t += rtt / 2
    yield t, conn.pkt(t, False, ACK | PSH, ws_frame(8, b"\x03\xe8")), ("ws", tag)
    t += 0.0002
    yield t, conn.pkt(t, False, FIN | ACK), None
    t += rtt / 2
    yield t, conn.pkt(t, True, FIN | ACK), None
    t += rtt / 2
    yield t, conn.pkt(t, False, ACK), None


def http_plain_flow(rng, conn, t, req_parts, resp, tag):
    rtt = rng.uniform(0.002, 0.06)
    yield t, conn.pkt(t, True, SYN), None
    t += rtt / 2
    yield t, conn.pkt(t, False, SYN | ACK), None
    t += rtt / 2
    yield t, conn.pkt(t, True, ACK), None
    for p in req_parts:
        t += rng.uniform(0.0002, 0.002)
        yield t, conn.pkt(t, True, ACK | PSH, p), ("http_req", tag)
    t += rtt / 2 + rng.uniform(0.002, 0.05)
    yield t, conn.pkt(t, False, ACK | PSH, resp), ("http_resp", tag)
    t += rtt / 2
    yield t, conn.pkt(t, True, FIN | ACK), None
    t += rtt / 2
    yield t, conn.pkt(t, False, FIN | ACK), None
    t += rtt / 2
    yield t, conn.pkt(t, True, ACK), None


def download_flow(rng, pool, conn, t, nbytes, rate, tls):
    rtt = rng.uniform(0.005, 0.15)
    yield t, conn.pkt(t, True, SYN), None
    t += rtt / 2
    yield t, conn.pkt(t, False, SYN | ACK), None
    t += rtt / 2
    yield t, conn.pkt(t, True, ACK), None
    t += 0.001
    yield t, conn.pkt(t, True, ACK | PSH, pool.take(rng, rng.randrange(200, 600))), None  # request
    t += rtt
    mss = 1448 if conn.ts_opt else 1460
    gap = mss / rate
    buf = bytearray()
    sent = 0
    n = 0
    pending = []
    while sent < nbytes:
        while len(buf) < mss:
            if tls:
                rl = rng.choice((16384, 16384, 16384, rng.randrange(100, 16384)))
                buf += b"\x17\x03\x03" + (rl + 24).to_bytes(2, "big") + pool.take(rng, rl + 24)
            else:
                buf += pool.take(rng, 16384)
        take = min(mss, nbytes - sent)
        p = bytes(buf[:take])
        del buf[:take]
        sent += take
        n += 1
        t += gap * rng.uniform(0.3, 1.7)
        yield from flush(pending, t)
        yield t, conn.pkt(t, False, ACK | (PSH if sent >= nbytes else 0), p), None
        if n % 2 == 0:
            ta = t + rng.uniform(0.00005, 0.0005)
            heapq.heappush(pending, (ta, conn.pkt(ta, True, ACK), None))
    t += rtt
    yield from flush(pending, t)
    yield t, conn.pkt(t, False, FIN | ACK), None
    t += rtt / 2
    yield t, conn.pkt(t, True, FIN | ACK), None
    t += rtt / 2
    yield t, conn.pkt(t, False, ACK), None


def audio_flow(rng, pool, conn, t, nbytes):
    rtt = rng.uniform(0.005, 0.1)
    yield t, conn.pkt(t, True, SYN), None
    t += rtt / 2
    yield t, conn.pkt(t, False, SYN | ACK), None
    t += rtt / 2
    yield t, conn.pkt(t, True, ACK), None
    chunk = rng.choice((320, 640, 960))
    ival = chunk / 32000.0
    sent = 0
    n = 0
    pending = []
    while sent < nbytes:
        t += ival * rng.uniform(0.9, 1.1)
        yield from flush(pending, t)
        yield t, conn.pkt(t, True, ACK | PSH, pool.take(rng, chunk)), None
        sent += chunk
        n += 1
        if n % 3 == 0:
            ta = t + rtt
            heapq.heappush(pending, (ta, conn.pkt(ta, False, ACK), None))
    t += max(0.01, rtt)
    yield from flush(pending, t)
    yield t, conn.pkt(t, True, FIN | ACK), None
    t += rtt / 2
    yield t, conn.pkt(t, False, FIN | ACK), None
    t += rtt / 2
    yield t, conn.pkt(t, True, ACK), None


def midstream_ws_flow(rng, pool, conn, t, nbytes):
    """WebSocket audio on port 8000 whose handshake predates the capture."""
    sent = 0
    while sent < nbytes:
        t += 0.06 * rng.uniform(0.8, 1.2)
        c2s = rng.random() < 0.5
        n = rng.randrange(40, 240)
        if c2s:
            f = ws_frame(2, pool.take(rng, n), pool.take(rng, 4))
        else:
            f = ws_frame(2, pool.take(rng, n))
        yield t, conn.pkt(t, c2s, ACK | PSH, f), None
        sent += len(f)
        if rng.random() < 0.3:
            yield t + 0.02, conn.pkt(t + 0.02, not c2s, ACK), None


def rtp_flow(rng, pool, a, b, l2, sp, dp, t, npk):
    seq = rng.getrandbits(16)
    ts = rng.getrandbits(32)
    ssrc = rng.getrandbits(32)
    for _ in range(npk):
        t += 0.02 * rng.uniform(0.95, 1.05)
        p = struct.pack("!BBHII", 0x80, 0, seq, ts, ssrc) + pool.take(rng, 160)
        seq = (seq + 1) & 0xFFFF
        ts = (ts + 160) & 0xFFFFFFFF
        yield t, udp_frame(a, b, l2, sp, dp, p, False), None


def dns_flow(rng, cli, res, l2q, l2r, t, name):
    qid = rng.getrandbits(16)
    sp = rng.randrange(32768, 61000)
    q = b"".join(bytes((len(x),)) + x.encode() for x in name.split(".")) + b"\0\x00\x01\x00\x01"
    yield t, udp_frame(cli, res, l2q, sp, 53, struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + q, False), None
    t += rng.uniform(0.002, 0.05)
    ans = b"\xc0\x0c\x00\x01\x00\x01" + struct.pack("!IH", 300, 4) + rng.randbytes(4)
    yield t, udp_frame(res, cli, l2r, 53, sp, struct.pack("!HHHHHH", qid, 0x8180, 1, 1, 0, 0) + q + ans, True), None


# --------------------------------------------------------------------------


def make_request(rng, host_hdr, key, dev, cid, token, pv):
    lower = rng.random() < 0.1
    variant = rng.random()
    up = "WebSocket" if variant < 0.05 else "websocket"
    conn_v = "keep-alive, Upgrade" if rng.random() < 0.1 else "Upgrade"
    hdrs = [("Upgrade", up), ("Connection", conn_v), ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13"), ("Device-Id", dev), ("Client-Id", cid),
            ("Authorization", "Bearer " + token), ("Protocol-Version", str(pv))]
    if rng.random() < 0.3:
        rng.shuffle(hdrs)
    if rng.random() < 0.2:
        hdrs.append(("User-Agent", rng.choice(["esp-box-3/1.6.2", "xiaozhi-py/0.3", "Python/3.11 websockets/12.0"])))
    hdrs.insert(0, ("Host", host_hdr))
    if lower:
        hdrs = [(k.lower(), v) for k, v in hdrs]
    s = "GET /xiaozhi/v1/ HTTP/1.1\r\n" + "".join("%s: %s\r\n" % kv for kv in hdrs) + "\r\n"
    return s.encode(), lower, up != "websocket"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=float, default=200.0, help="target file size in MB (10^6 bytes)")
    ap.add_argument("--format", choices=("pcap", "pcapng"), default="pcap")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True)
    ap.add_argument("--handshakes", type=int, default=None, help="default: 2 per MB (at least 20)")
    ap.add_argument("--duration", type=float, default=600.0, help="capture duration in seconds")
    a = ap.parse_args(argv)

    t_start = time.time()
    rng = random.Random(a.seed)
    pool = Pool(random.Random(a.seed * 7919 + 1))
    mb = a.size_mb
    target = int(mb * 1e6)
    D = a.duration
    n_hs = a.handshakes if a.handshakes is not None else max(20, int(round(2 * mb)))
    n_http = max(5, int(round(1 * mb)))
    n_dl = max(10, int(round(12 * mb)))
    n_audio = max(3, int(round(3 * mb)))
    n_mid = max(2, int(round(0.5 * mb)))
    n_rtp = max(2, int(round(0.25 * mb)))
    n_dns = max(10, int(round(2 * mb)))

    # hosts
    gw_mac = rand_mac(rng)
    lan_srv = Host("192.168.1.10", rand_mac(rng), rng)
    lan_srv2 = Host("192.168.1.11", rand_mac(rng), rng)
    resolver = Host("192.168.1.1", gw_mac, rng)
    clients = [Host("192.168.1.%d" % (100 + i), rand_mac(rng, rng.choice(ESP_OUIS)), rng) for i in range(120)]
    pcs = [Host("192.168.2.%d" % (10 + i), rand_mac(rng), rng) for i in range(40)]
    remotes = [Host("%s.%d" % (rng.choice(["203.0.113", "198.51.100", "192.0.2"]), rng.randrange(1, 255)),
                    gw_mac, rng) for _ in range(200)]
    used_ports = set()

    def eph(cli):
        # unique per client address (a 4-tuple is what must not repeat): ports unique across the
        # whole capture ran out at ~28,000 flows and looped forever beyond ~1.6 GB
        while True:
            p = rng.randrange(32768, 61000)
            if (cli.ip, p) not in used_ports:
                used_ports.add((cli.ip, p))
                return p

    def l2(src, dst):
        return dst.mac + src.mac + b"\x08\x00"

    gens = []
    truth_hs = []
    hs_bytes_est = 0
    # --- WebSocket handshakes
    for i in range(n_hs):
        cli = rng.choice(clients)
        srv = lan_srv if rng.random() < 0.8 else lan_srv2
        sport = rng.choice(WS_PORTS)
        cport = eph(cli)
        key = base64.b64encode(rng.randbytes(16)).decode()
        dev = mac_str(cli.mac) if rng.random() < 0.9 else mac_str(rand_mac(rng, rng.choice(ESP_OUIS)))
        cid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        token = "test-token" if rng.random() < 0.3 else jwt_like(rng)
        pv = rng.choice((1, 1, 2, 3))
        host_hdr = ip_str(srv.ip) + ("" if sport == 80 else ":%d" % sport)
        req, lower, up_variant = make_request(rng, host_hdr, key, dev, cid, token, pv)
        r = rng.random()
        status = 101 if r < 0.75 else (403 if r < 0.95 else None)
        r = rng.random()
        nseg = 1 if r < 0.6 else (2 if r < 0.85 else 3)
        cuts = sorted(rng.sample(range(20, len(req) - 4), nseg - 1))
        ooo = nseg > 1 and rng.random() < 0.12
        retx = rng.random() < 0.08
        accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest()).decode()
        if status == 101:
            extra = "Server: %s\r\n" % rng.choice(["Python/3.11 websockets/12.0", "nginx/1.24.0"]) if rng.random() < 0.5 else ""
            resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    "Sec-WebSocket-Accept: %s\r\n%s\r\n" % (accept, extra)).encode()
        elif status == 403:
            body = rng.choice(["Forbidden: invalid token\n", "", "Device not activated\n"])
            resp = ("HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
                    "Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)).encode()
        else:
            resp = b""
        hs = {
            "id": i, "client": "%s:%d" % (ip_str(cli.ip), cport), "server": "%s:%d" % (ip_str(srv.ip), sport),
            "status": status, "segments": nseg, "retransmitted": retx, "out_of_order": ooo,
            "lowercase_headers": lower, "upgrade_value_not_lowercase": up_variant,
            "device_id": dev, "client_id": cid, "protocol_version": pv, "sec_websocket_key": key,
            "request_len": len(req),
            "_request": req, "_cuts": cuts, "_response": resp, "_rtt": rng.uniform(0.002, 0.08),
            "_retx_seg": rng.randrange(nseg), "_nbin": rng.randrange(2, 9) if status == 101 else 0,
        }
        hs["ws_frames"] = (hs["_nbin"] + 4) if status == 101 else 0
        truth_hs.append(hs)
        conn = TcpConn(rng, cli, srv, cport, sport, rng.random() < 0.5, l2(cli, srv), l2(srv, cli))
        gens.append(ws_handshake_flow(random.Random(rng.getrandbits(64)), hs, conn, rng.uniform(0, D - 15)))
        hs_bytes_est += 4000

    # --- plain HTTP (not upgrades) on the same ports
    http_truth = {"requests": 0, "post": 0, "get": 0}
    for i in range(n_http):
        cli = rng.choice(clients)
        srv = lan_srv if rng.random() < 0.8 else lan_srv2
        sport = rng.choice(WS_PORTS)
        host_hdr = ip_str(srv.ip) + ("" if sport == 80 else ":%d" % sport)
        if rng.random() < 0.7:
            body = ('{"version":2,"flash_size":16777216,"mac_address":"%s","uuid":"%s","application":'
                    '{"name":"xiaozhi","version":"1.6.2","elf_sha256":"%s"},"board":{"type":"esp-box-3"}}'
                    % (mac_str(cli.mac), uuid.UUID(int=rng.getrandbits(128), version=4),
                       rng.randbytes(32).hex())).encode()
            head = ("POST /xiaozhi/ota/ HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                    "Device-Id: %s\r\nUser-Agent: esp-box-3/1.6.2\r\nAccept-Language: zh-CN\r\n"
                    "Content-Length: %d\r\n\r\n" % (host_hdr, mac_str(cli.mac), len(body))).encode()
            parts = [head, body] if rng.random() < 0.5 else [head + body]
            rb = ('{"firmware":{"version":"1.6.2","url":""},"websocket":{"url":"ws://%s/xiaozhi/v1/",'
                  '"token":"test-token"},"server_time":{"timestamp":%d}}' % (host_hdr, rng.randrange(10 ** 12))).encode()
            http_truth["post"] += 1
        else:
            parts = [("GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host_hdr).encode()]
            rb = b"ok\n"
            http_truth["get"] += 1
        http_truth["requests"] += 1
        resp = ("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(rb)).encode() + rb
        conn = TcpConn(rng, cli, srv, eph(cli), sport, rng.random() < 0.5, l2(cli, srv), l2(srv, cli))
        gens.append(http_plain_flow(random.Random(rng.getrandbits(64)), conn, rng.uniform(0, D - 5), parts, resp, i))
        hs_bytes_est += 2500

    remaining = max(0, target - hs_bytes_est - 24)
    # overhead factors (frame+record bytes per payload byte), measured roughly
    b_udp = 0.08 * remaining
    b_mid = 0.05 * remaining
    b_audio = 0.15 * remaining
    b_dl = remaining - b_udp - b_mid - b_audio

    def split_budget(total, n, alpha):
        w = [min(rng.paretovariate(alpha), 50.0) for _ in range(n)]
        s = sum(w)
        return [total * x / s for x in w]

    # --- downloads
    for nb in split_budget(b_dl / 1.09, n_dl, 1.3):
        cli = rng.choice(clients + pcs)
        srv = rng.choice(remotes)
        tls = rng.random() < 0.5
        sport = 443 if tls else rng.choice([5001, 9443, 8888, 6881, 50000 + rng.randrange(10000)])
        conn = TcpConn(rng, cli, srv, eph(cli), sport, rng.random() < 0.7, l2(cli, srv), l2(srv, cli))
        rate = rng.uniform(50e3, 2e6)
        dur = nb / rate
        t0 = rng.uniform(0, max(1.0, D - dur))
        gens.append(download_flow(random.Random(rng.getrandbits(64)), pool, conn, t0, max(1, int(nb)), rate, tls))
    # --- audio uploads
    for nb in split_budget(b_audio / 1.2, n_audio, 2.0):
        cli = rng.choice(clients)
        srv = rng.choice(remotes)
        conn = TcpConn(rng, cli, srv, eph(cli), rng.randrange(7000, 8000), rng.random() < 0.3, l2(cli, srv), l2(srv, cli))
        dur = nb / 32000.0
        t0 = rng.uniform(0, max(1.0, D - dur))
        gens.append(audio_flow(random.Random(rng.getrandbits(64)), pool, conn, t0, int(nb)))
    # --- mid-stream websocket audio on 8000
    for nb in split_budget(b_mid / 1.45, n_mid, 2.0):
        cli = rng.choice(clients)
        conn = TcpConn(rng, cli, lan_srv, eph(cli), 8000, rng.random() < 0.5, l2(cli, lan_srv), l2(lan_srv, cli))
        dur = nb / (170 / 0.06)
        t0 = rng.uniform(0, max(1.0, D - dur))
        gens.append(midstream_ws_flow(random.Random(rng.getrandbits(64)), pool, conn, t0, int(nb)))
    # --- UDP RTP
    for nb in split_budget(b_udp * 0.95, n_rtp, 2.0):
        a_ = rng.choice(pcs)
        b_ = rng.choice(remotes)
        npk = max(1, int(nb / 230))
        t0 = rng.uniform(0, max(1.0, D - npk * 0.02))
        sp, dp = rng.randrange(10000, 20000, 2), rng.randrange(10000, 20000, 2)
        gens.append(rtp_flow(random.Random(rng.getrandbits(64)), pool, a_, b_, l2(a_, b_), sp, dp, t0, npk))
    names = ["api.tenclass.net", "ota.example.com", "time.example.org", "ntp.example.net", "cdn.example.com"]
    for i in range(n_dns):
        cli = rng.choice(clients + pcs)
        gens.append(dns_flow(random.Random(rng.getrandbits(64)), cli, resolver, l2(cli, resolver),
                             l2(resolver, cli), rng.uniform(0, D), rng.choice(names)))

    # --- write
    out = open(a.out, "wb", buffering=0)
    if a.format == "pcap":
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        rec = struct.Struct("<IIII").pack
    else:
        shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
        idb = struct.pack("<IIHHI", 1, 20, 1, 0, 262144) + struct.pack("<I", 20)
        out.write(shb + idb)
        epb = struct.Struct("<IIIIIII").pack
    chunk = []
    csize = 0
    total = 24 if a.format == "pcap" else 48
    npk = 0
    last_t = -1.0
    frames_of = {}  # (kind, id) -> [frame numbers]
    n_tcp = n_udp = 0
    for t, frame, tag in heapq.merge(*gens, key=itemgetter(0)):
        npk += 1
        if t < last_t:
            raise AssertionError("generator produced out-of-order timestamps")
        last_t = t
        us = int((EPOCH + t) * 1e6 + 0.5)
        n = len(frame)
        if a.format == "pcap":
            b = rec(us // 1000000, us % 1000000, n, n) + frame
        else:
            pad = (-n) & 3
            tl = 32 + n + pad
            b = epb(6, tl, 0, us >> 32, us & 0xFFFFFFFF, n, n) + frame + b"\0" * pad + tl.to_bytes(4, "little")
        chunk.append(b)
        csize += len(b)
        if tag is not None:
            frames_of.setdefault(tag, []).append(npk)
        if csize >= 1 << 22:
            out.write(b"".join(chunk))
            total += csize
            chunk = []
            csize = 0
    out.write(b"".join(chunk))
    total += csize
    out.close()

    n_tcp_flows = n_hs + n_http + n_dl + n_audio + n_mid
    hs_out = []
    for hs in truth_hs:
        d = {k: v for k, v in hs.items() if not k.startswith("_")}
        d["request_frames"] = frames_of.get(("req", hs["id"]), [])
        d["retransmission_frames"] = frames_of.get(("retx", hs["id"]), [])
        d["response_frame"] = (frames_of.get(("resp", hs["id"])) or [None])[0]
        hs_out.append(d)
    st = [h["status"] for h in truth_hs]
    summary = {
        "total": n_hs,
        "status_101": st.count(101),
        "status_403": st.count(403),
        "no_response": st.count(None),
        "segments_1": sum(1 for h in truth_hs if h["segments"] == 1),
        "segments_2": sum(1 for h in truth_hs if h["segments"] == 2),
        "segments_3": sum(1 for h in truth_hs if h["segments"] == 3),
        "retransmitted": sum(1 for h in truth_hs if h["retransmitted"]),
        "out_of_order": sum(1 for h in truth_hs if h["out_of_order"]),
        "lowercase_headers": sum(1 for h in truth_hs if h["lowercase_headers"]),
        "upgrade_value_not_lowercase": sum(1 for h in truth_hs if h["upgrade_value_not_lowercase"]),
        "upgrade_in_first_segment": sum(1 for h in truth_hs if b"pgrade: " in h["_request"][:(h["_cuts"] + [10 ** 9])[0]]),
        "ws_frames_after_101": sum(h["ws_frames"] for h in truth_hs),
        "server_ports": {str(p): sum(1 for h in truth_hs if h["server"].endswith(":%d" % p)) for p in sorted(set(WS_PORTS))},
    }
    truth = {
        "generator": "make_corpus.py",
        "args": {"size_mb": a.size_mb, "format": a.format, "seed": a.seed, "duration": D,
                 "handshakes": a.handshakes},
        "file_bytes": total,
        "packets": npk,
        "tcp_flows": n_tcp_flows,
        "udp_flows": n_rtp + n_dns,
        "flows": {"ws_handshake": n_hs, "http_plain": n_http, "download": n_dl, "audio_upload": n_audio,
                  "midstream_ws_8000": n_mid, "udp_rtp": n_rtp, "udp_dns": n_dns},
        "handshakes": summary,
        "plain_http": http_truth,
        "handshake_list": hs_out,
    }
    with open(a.out + ".truth.json", "w") as f:
        json.dump(truth, f, indent=1)
    print("wrote %s: %d bytes, %d packets, %d handshakes (101=%d 403=%d none=%d) in %.1fs"
          % (a.out, total, npk, n_hs, summary["status_101"], summary["status_403"], summary["no_response"],
             time.time() - t_start), file=sys.stderr)


if __name__ == "__main__":
    main()
