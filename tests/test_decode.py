"""The packet decoder against tshark on real captures of many link types, and on crafted packets.

Every TCP segment tshark sees in the public captures must come out of `decode` with the same
addresses, ports, raw sequence numbers and payload (checked on one packet per link type below,
and by count on every file); everything that is not a whole TCP segment must be None, with a
named anomaly when something was wrong rather than merely not TCP.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
from capbuild import ether, http_packet, ipv4, ipv6, tcp
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer.limits import Limits
from analyzer.model import Anomaly, Endpoint, InputSummary, Segment
from analyzer.sources.decode import AnomalyLog, decode
from analyzer.sources.pcapfile import open_input, read_records

DATA = Path(__file__).parent / "data" / "public"


def segments(rel: str) -> tuple[dict[int, Segment], list[Anomaly]]:
    anomalies: list[Anomaly] = []
    out: dict[int, Segment] = {}
    with open_input(str(DATA / rel)) as stream:
        for rec in read_records(stream, InputSummary(rel)):
            seg = decode(rec.linktype, rec.data, rec.frame, rec.ts_ns, anomalies.append)
            if seg is not None:
                out[rec.frame] = seg
    return out, anomalies


# `tshark -r F -Y tcp -T fields -e frame.number | wc -l` (tshark 4.0.17), for every capture with
# TCP in it. Deviation: in fuzz-2006-09-29-28586.pcap tshark also matches `tcp` on 3 frames whose
# TCP header is cut short (27, 80, 111); decode reports those as truncated-header instead.
TCP_SEGMENTS = {
    "arkime/80211http.pcap": 26,
    "arkime/arkime_synthetic.pcap": 733,
    "arkime/tcp-reassembly-synthetic.pcap": 106,
    "arkime/websocket.pcap": 19,
    "arkime/wireshark-retrans.pcap": 108,
    "gopacket/test_loopback.pcap": 24,
    "libpcap/http_PPI.pcap": 1,
    "ndn-tools/ipv4-websocket-segmented.pcap": 23,
    "ndn-tools/ipv6-websocket-segmented.pcap": 13,
    "ndpi/1kxun.pcap": 1381,
    "ndpi/false_positives.pcapng": 4,
    "ndpi/fuzz-2006-09-29-28586.pcap": 117 - 3,
    "ndpi/http-lines-split.pcap": 14,
    "ndpi/http_origin_different_than_host.pcap": 4,
    "ndpi/tls_heur__vmess-websocket.pcapng": 96,
    "pcap2har-andrewf/out-of-order.pcap": 3214,
    "pcap2har-mikekap/firefox-tls13-facebook-dsb.pcapng": 115,
    "pcapng-test-generator/be-basic-test006.pcapng": 0,
    "pcapng-test-generator/le-difficult-test202.pcapng": 0,
    "pcapplusplus/650HttpResponses.pcap": 682,
    "pcapplusplus/HttpMalformedResponse.pcapng": 1,
    "pcapplusplus/PartialHttpRequest.pcap": 1,
    "pcapplusplus/many_interfaces-1.pcapng": 32,
    "pcapplusplus/nanosecs_big_endian.pcap": 10,
    "pcapplusplus/pcapng-example.pcapng": 159,
    "pcapplusplus/raw_ip.pcap": 92,
    "pcapplusplus/unidirectional_tcp_stream_with_missing_packet.pcap": 14,
    "scapy/http_head.pcapng.gz": 10,
    "scapy/tls_nss_example.pcap": 37,
    "suricata-verify/decode-chdlc-01-hdlc-http_1tx.pcap": 17,
    "suricata-verify/decode-sll2-01-input.pcap": 5,
    "suricata-verify/http-request-header-multi-input.pcap": 5,
    "suricata-verify/http2-keywords2-input.pcap": 10,
    "suricata-verify/protocol-change-failed-event-input.pcap": 10,
    "suricata-verify/tcp-fastopen-08-tcp_fastopen_segmentation-s1.pcap": 12,
    "suricata-verify/websocket-basic_websockets.pcap": 21,
    "suricata-verify/websocket-compressed-example_websocket.pcap": 27,
    "suricata-verify/websocket-control-frag-input.pcap": 15,
    "suricata-verify/websocket-ping-input.pcap": 19,
    "tcpdump/arcnet-rfc1201-arp-icmp-http.pcap": 14,
    "tcpdump/bgp_vpn_attrset.pcap": 1,
    "zeek/basic-auth-with-colon.pcap": 12,
    "zeek/broker-websocket.pcap": 22,
    "zeek/docker-http-upgrade.pcap": 200,
    "zeek/fragmented-http-reply.pcap": 18,
    "zeek/get-to-ssh-server.pcap": 9,
    "zeek/http-vlan-0.pcap": 14,
    "zeek/http_large_req_8001.pcap": 13,
    "zeek/jupyter-websocket.pcap": 20,
    "zeek/message-too-big-status.pcap": 14,
    "zeek/nflog-http.pcap": 13,
    "zeek/oversized-close-frame.pcapng": 8,
    "zeek/pcapng-multi-interface.pcapng": 0,
    "zeek/pppoe-over-qinq.pcap": 86,
    "zeek/reply-ping-coalesced.pcap": 16,
    "zeek/tls-1.2-stream-keylog.pcap": 237,
    "zeek/tls12-decryption.pcap": 16,
    "zeek/trunc-hdr.pcap": 0,
    "zeek/two-binary-fragments.pcap": 18,
    "zeek/vlan-qinqinq.pcap": 14,
    "zeek/websocket.pcap": 27,
    "zeek/wrong-accept-header.pcap": 12,
    "zeek/wstunnel-http.pcap": 13,
    "zeek/wstunnel-https.pcap": 124,
    "zeek/wstunnel-ssh.pcap": 258,
}


@pytest.mark.parametrize("rel", sorted(TCP_SEGMENTS))
def test_tcp_segment_count_matches_tshark(rel: str) -> None:
    found, _ = segments(rel)
    assert len(found) == TCP_SEGMENTS[rel]


def test_cut_tcp_headers_are_reported_not_guessed() -> None:
    found, anomalies = segments("ndpi/fuzz-2006-09-29-28586.pcap")
    cut = {a.frame for a in anomalies if a.name == "truncated-header"}
    assert cut == {27, 80, 111} and not cut & set(found)
    assert {a.name for a in anomalies} >= {"ip-fragment-not-reassembled", "bad-ip-header", "truncated-ip"}


# One TCP segment with payload per link type / encapsulation, from
#   tshark -r F -Y tcp -T fields -e frame.number -e ip.src -e ipv6.src -e ip.dst -e ipv6.dst
#     -e tcp.srcport -e tcp.dstport -e tcp.seq_raw -e tcp.ack_raw -e tcp.flags -e tcp.payload
#     -e eth.src -e eth.dst -e sll.src.eth -e wlan.sa -e wlan.da
# (innermost addresses for the GTP-U tunnels; first 16 payload bytes).
FACTS = [
    # 802.1Q VLAN, and three stacked tags
    (
        "zeek/http-vlan-0.pcap",
        4,
        "141.142.228.5",
        "192.150.187.43",
        59856,
        80,
        4263588411,
        2779762239,
        0x18,
        136,
        b"GET /download/CH",
        "c8:bc:c8:96:d2:a0",
        "00:10:db:88:d2:ef",
    ),
    (
        "zeek/vlan-qinqinq.pcap",
        4,
        "141.142.228.5",
        "192.150.187.43",
        59856,
        80,
        4263588411,
        2779762239,
        0x18,
        136,
        b"GET /download/CH",
        "c8:bc:c8:96:d2:a0",
        "00:10:db:88:d2:ef",
    ),
    # Linux cooked v1 and v2 (only the sender's address exists)
    (
        "suricata-verify/websocket-ping-input.pcap",
        4,
        "127.0.0.1",
        "127.0.0.1",
        55371,
        10301,
        1326362268,
        963777669,
        0x18,
        241,
        b"GET / HTTP/1.1\r\n",
        "00:00:00:00:00:00",
        None,
    ),
    (
        "suricata-verify/decode-sll2-01-input.pcap",
        4,
        "192.168.1.253",
        "192.168.1.21",
        56478,
        80,
        2332771220,
        845479109,
        0x18,
        82,
        b"GET /testing HTT",
        "aa:76:30:71:b0:e7",
        None,
    ),
    # LINKTYPE_IPV4 (228), raw IP (101) carrying IPv6, BSD NULL with IPv6
    (
        "zeek/basic-auth-with-colon.pcap",
        4,
        "172.24.133.205",
        "172.24.133.205",
        43090,
        8000,
        11897820,
        3312465584,
        0x18,
        186,
        b"GET / HTTP/1.1\r\n",
        None,
        None,
    ),
    (
        "pcapplusplus/raw_ip.pcap",
        4,
        "2001:618:400::5199:cc70",
        "2001:618:1:8000::5",
        35995,
        80,
        1793525559,
        3102676803,
        0x18,
        348,
        b"GET / HTTP/1.1\r\n",
        None,
        None,
    ),
    (
        "gopacket/test_loopback.pcap",
        1,
        "::1",
        "::1",
        58799,
        8080,
        144119398,
        174417647,
        0x18,
        484,
        b"GET /pkg/github.",
        None,
        None,
    ),
    # 802.11 + radiotap (scapy), SA/DA per ToDS/FromDS; PPI (scapy) with only a SYN
    (
        "arkime/80211http.pcap",
        4,
        "172.5.5.113",
        "14.17.32.211",
        49417,
        80,
        2524188119,
        1539642335,
        0x18,
        580,
        b"GET / HTTP/1.1\r\n",
        "f8:a9:d0:1e:90:a3",
        "88:25:93:40:6b:6f",
    ),
    (
        "libpcap/http_PPI.pcap",
        5,
        "192.168.1.132",
        "130.192.73.1",
        3827,
        80,
        888888568,
        0,
        0x02,
        0,
        b"",
        "00:14:a5:cb:6e:1a",
        "00:01:02:27:f9:b2",
    ),
    # VLAN + GTP-U tunnels: the inner IPv4 header's addresses
    (
        "ndpi/false_positives.pcapng",
        3,
        "10.140.231.26",
        "159.65.12.169",
        61202,
        443,
        3173307336,
        2061674983,
        0x18,
        325,
        b"GET /ws HTTP/1.1",
        "00:01:00:00:00:04",
        "00:00:00:00:00:00",
    ),
    (
        "ndpi/http_origin_different_than_host.pcap",
        3,
        "10.140.206.74",
        "18.135.206.102",
        34536,
        80,
        961665051,
        3671979961,
        0x18,
        607,
        b"GET /?topreferer",
        "00:01:00:00:00:02",
        "00:00:00:00:00:00",
    ),
    # Cisco HDLC, ARCNET, NFLOG, PPP (scapy), PPPoE over QinQ
    (
        "suricata-verify/decode-chdlc-01-hdlc-http_1tx.pcap",
        4,
        "192.168.2.7",
        "65.55.116.183",
        4938,
        80,
        2620655981,
        358477129,
        0x18,
        961,
        b"GET /CNT/iview/1",
        None,
        None,
    ),
    (
        "tcpdump/arcnet-rfc1201-arp-icmp-http.pcap",
        16,
        "10.80.131.1",
        "146.190.240.163",
        1027,
        80,
        2567257386,
        305328890,
        0x18,
        194,
        b"GET / HTTP/1.1\r\n",
        None,
        None,
    ),
    (
        "zeek/nflog-http.pcap",
        6,
        "10.0.2.15",
        "93.184.216.34",
        49762,
        80,
        1060289234,
        1131904002,
        0x18,
        79,
        b"GET / HTTP/1.1\r\n",
        None,
        None,
    ),
    (
        "tcpdump/bgp_vpn_attrset.pcap",
        1,
        "12.4.4.4",
        "12.1.1.1",
        2051,
        179,
        3293077573,
        3348108582,
        0x18,
        121,
        b"\xff" * 16,
        None,
        None,
    ),
    (
        "zeek/pppoe-over-qinq.pcap",
        4,
        "1.1.1.1",
        "2.2.2.2",
        20394,
        443,
        3618128214,
        4237337343,
        0x18,
        517,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xc9\xbc\xeeS\xa4",
        "00:00:00:00:00:00",
        "00:00:00:00:00:01",
    ),
    # multi-interface pcapng (Ethernet + NULL), pcapng with Ethernet + SLL, ns big-endian pcap
    (
        "pcapplusplus/many_interfaces-1.pcapng",
        27,
        "192.168.1.139",
        "74.125.228.227",
        50981,
        443,
        734932619,
        1129612081,
        0x18,
        517,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xf0\x91\xbc\x87>",
        "a4:5e:60:f1:7d:93",
        "94:10:3e:05:36:d3",
    ),
    (
        "pcapplusplus/pcapng-example.pcapng",
        4,
        "127.0.0.1",
        "127.0.0.1",
        3306,
        40304,
        1898561449,
        4294653581,
        0x18,
        103,
        b"c\x00\x00\x00\n5.5.40-Mari",
        "00:00:00:00:00:00",
        "00:00:00:00:00:00",
    ),
    (
        "pcapplusplus/nanosecs_big_endian.pcap",
        4,
        "127.0.0.1",
        "127.0.0.1",
        43030,
        8000,
        1593692745,
        3239046833,
        0x18,
        78,
        b"GET / HTTP/1.1\r\n",
        "00:00:00:00:00:00",
        "00:00:00:00:00:00",
    ),
    (
        "ndpi/fuzz-2006-09-29-28586.pcap",
        8,
        "172.20.3.5",
        "172.20.3.13",
        2601,
        80,
        3830164106,
        3383168341,
        0x10,
        1460,
        b"POST /servlets/m",
        "00:50:8b:93:93:7c",
        "08:00:20:b2:5d:7b",
    ),
    (
        "ndpi/tls_heur__vmess-websocket.pcapng",
        4,
        "127.0.0.1",
        "127.0.0.1",
        44532,
        1080,
        2675577551,
        3002976675,
        0x18,
        4,
        b"\x05\x02\x00\x01",
        "00:00:00:00:00:00",
        None,
    ),
    (
        "ndn-tools/ipv6-websocket-segmented.pcap",
        2,
        "2607:f010:3f9::1001",
        "2607:f010:3f9::11:0",
        59720,
        9696,
        748367564,
        4238456161,
        0x18,
        516,
        b"GET / HTTP/1.1\r\n",
        "68:5b:35:c0:61:b6",
        "00:1d:09:94:65:38",
    ),
]


@pytest.mark.parametrize("fact", FACTS, ids=[f"{f[0]}#{f[1]}" for f in FACTS])
def test_segment_fields_match_tshark(fact: tuple[Any, ...]) -> None:
    rel, frame, src, dst, sport, dport, seq, ack, flags, length, prefix, smac, dmac = fact
    found, _ = segments(rel)
    seg = found[frame]
    assert (seg.src, seg.dst) == (Endpoint(src, sport), Endpoint(dst, dport))
    assert (seg.seq, seg.ack, seg.flags & 0xFF, len(seg.payload)) == (seq, ack, flags, length)
    assert seg.payload[:16] == prefix
    assert (seg.src_mac, seg.dst_mac) == (smac, dmac)
    assert seg.frame == frame


def test_radiotap_macs_follow_the_direction() -> None:
    # tshark wlan.sa / wlan.da of frames 1 (client -> AP, ToDS) and 2 (AP -> client, FromDS)
    found, _ = segments("arkime/80211http.pcap")
    assert (found[1].src_mac, found[1].dst_mac) == ("f8:a9:d0:1e:90:a3", "88:25:93:40:6b:6f")
    assert (found[2].src_mac, found[2].dst_mac) == ("88:25:93:40:6b:6f", "f8:a9:d0:1e:90:a3")


# -------------------------------------------------------------------------------------------
# Crafted packets


def _drop(anomaly: Anomaly) -> None:
    pass


def one(linktype: int, data: bytes) -> tuple[Segment | None, list[str]]:
    anomalies: list[Anomaly] = []
    seg = decode(linktype, data, 7, 123, anomalies.append)
    return seg, [a.name for a in anomalies]


def test_fast_path_and_general_path_agree() -> None:
    plain = http_packet(3)
    tagged = ether(ipv4(tcp(b"GET /3 HTTP/1.1\r\n", seq=1300)), ethertype=0x0800, tags=(0x8100,))
    a, _ = one(1, plain)
    b, _ = one(1, tagged)
    assert a == b
    assert a == Segment(
        7,
        123,
        Endpoint("10.0.0.1", 40000),
        Endpoint("10.0.0.2", 80),
        1300,
        0,
        0x18,
        b"GET /3 HTTP/1.1\r\n",
        "66:77:88:99:aa:bb",
        "00:11:22:33:44:aa",
        False,  # capbuild leaves the TCP checksum zero
    )


@pytest.mark.parametrize("tags", [(0x8100,), (0x88A8, 0x8100), (0x9100, 0x8100, 0x8100)])
def test_vlan_tags(tags: tuple[int, ...]) -> None:
    seg, names = one(1, ether(ipv4(tcp(b"hi")), tags=tags))
    assert seg is not None and seg.payload == b"hi" and names == []


def test_ethernet_padding_is_not_payload() -> None:
    frame = ether(ipv4(tcp(b""))) + b"\x00" * 6  # padded to the 60-byte minimum
    seg, _ = one(1, frame)
    assert seg is not None and seg.payload == b""


def test_ipv4_options_and_tcp_options_are_skipped() -> None:
    pkt = ether(ipv4(tcp(b"data", options=b"\x02\x04\x05\xb4\x01\x01\x04\x02"), options=b"\x01\x01\x01\x00"))
    seg, _ = one(1, pkt)
    assert seg is not None and seg.payload == b"data"


@pytest.mark.parametrize("frag", [0x2000, 0x0010, 0x2010])  # MF, offset only, both
def test_ip_fragments_are_not_segments(frag: int) -> None:
    seg, names = one(1, ether(ipv4(tcp(b"x"), frag=frag)))
    assert seg is None and names == ["ip-fragment-not-reassembled"]


@pytest.mark.parametrize(
    ("data", "linktype"),
    [
        (ether(b"")[:10], 1),
        (ether(ipv4(tcp()))[: 14 + 19], 1),
        (ether(ipv4(tcp()), tags=(0x8100,))[:16], 1),
        (b"\x02\x00", 0),
        (bytes(10), 113),
        (bytes(12), 276),
    ],
)
def test_truncated_headers(data: bytes, linktype: int) -> None:
    seg, names = one(linktype, data)
    assert seg is None and names == ["truncated-header"]


def test_truncated_tcp_header() -> None:
    pkt = ether(ipv4(tcp(b"", options=b"\x01" * 20)))
    seg, names = one(1, pkt[:-10])  # the IP length says 60, 50 bytes captured
    assert seg is None and names == ["truncated-ip", "truncated-header"]


def test_bad_header_lengths() -> None:
    bad_ihl = bytearray(ether(ipv4(tcp())))
    bad_ihl[14] = 0x44
    assert one(1, bytes(bad_ihl)) == (None, ["bad-ip-header"])
    bad_doff = bytearray(ether(ipv4(tcp())))
    bad_doff[14 + 20 + 12] = 0x40
    assert one(1, bytes(bad_doff)) == (None, ["bad-tcp-header-length"])
    short_total = ether(ipv4(tcp(), total=10))
    assert one(1, short_total) == (None, ["bad-ip-header"])


def test_snaplen_cut_payload_is_kept_and_flagged() -> None:
    pkt = ether(ipv4(tcp(b"A" * 100)))[:80]
    seg, names = one(1, pkt)
    assert seg is not None and seg.payload == b"A" * 26 and names == ["truncated-ip"]


def test_ipv4_total_length_zero_means_offload() -> None:
    seg, names = one(1, ether(ipv4(tcp(b"abc"), total=0)))
    assert seg is not None and seg.payload == b"abc" and names == []


def test_ipv6_extension_headers() -> None:
    hop = bytes([60, 0]) + b"\x00" * 6  # hop-by-hop, next: destination options
    dst = bytes([44, 0]) + b"\x00" * 6  # destination options, next: fragment
    frag = bytes([6, 0, 0, 0]) + b"\x00" * 4  # atomic fragment (offset 0, M=0), next: TCP
    seg, names = one(229, ipv6(hop + dst + frag + tcp(b"v6"), nh=0))
    assert seg is not None and seg.payload == b"v6" and names == []
    assert seg.src == Endpoint("2001:db8::1", 40000)


def test_ipv6_fragment_and_long_chains() -> None:
    frag = bytes([6, 0, 0, 1]) + b"\x00" * 4  # M=1
    assert one(229, ipv6(frag + tcp(), nh=44)) == (None, ["ip-fragment-not-reassembled"])
    chain = b"".join(bytes([60, 0]) + b"\x00" * 6 for _ in range(9)) + tcp()
    assert one(229, ipv6(chain, nh=60)) == (None, ["ipv6-extension-chain-too-long"])


def test_ip_in_ip_uses_the_inner_addresses() -> None:
    inner4 = ipv4(tcp(b"in"), src=b"\xc0\xa8\x00\x01", dst=b"\xc0\xa8\x00\x02")
    inner6 = ipv6(tcp(b"in6"))
    for outer, who in [
        (ipv4(inner4, proto=4), "192.168.0.1"),  # IPv4 in IPv4
        (ipv4(inner6, proto=41), "2001:db8::1"),  # 6in4
        (ipv6(inner4, nh=4), "192.168.0.1"),  # 4in6
        (
            ipv4(struct.pack("!HH", 0x2000, 0x0800) + b"\x00\x00\x00\x07" + inner4, proto=47),
            "192.168.0.1",
        ),  # GRE+key
    ]:
        seg, names = one(1, ether(outer, ethertype=0x0800 if outer[0] >> 4 == 4 else 0x86DD))
        assert seg is not None and seg.src.ip == who and names == [], who


def test_non_tcp_is_none_without_anomaly() -> None:
    assert one(1, ether(ipv4(b"\x00" * 8, proto=17))) == (None, [])  # UDP
    assert one(1, ether(b"\x00" * 28, ethertype=0x0806)) == (None, [])  # ARP
    assert one(0, struct.pack("<I", 7) + b"\x00" * 40) == (None, [])  # unknown family
    assert one(1, b"") == (None, [])


@pytest.mark.parametrize(
    ("linktype", "header"),
    [
        (0, struct.pack("<I", 2)),
        (0, struct.pack(">I", 2)),
        (0, struct.pack("<I", 30)),
        (0, struct.pack(">I", 24)),
        (0, struct.pack("<I", 28)),
        (108, struct.pack(">I", 2)),
        (12, b""),
        (14, b""),
        (101, b""),
        (228, b""),
        (229, b""),
        (104, b"\x0f\x00\x08\x00"),
        (113, struct.pack("!HHH8sH", 0, 1, 6, bytes.fromhex("a0b76512345600"), 0x0800)),
        (276, struct.pack("!HHIHBB8s", 0x0800, 0, 1, 1, 0, 6, bytes.fromhex("a0b7651234560000"))),
    ],
)
def test_link_types(linktype: int, header: bytes) -> None:
    is6 = linktype == 229 or header in (struct.pack("<I", 30), struct.pack(">I", 24), struct.pack("<I", 28))
    packet = ipv6(tcp(b"ok")) if is6 else ipv4(tcp(b"ok"))
    seg, names = one(linktype, header + packet)
    assert seg is not None and seg.payload == b"ok" and names == []
    if linktype in (113, 276):
        assert (seg.src_mac, seg.dst_mac) == ("a0:b7:65:12:34:56", None)


def test_unsupported_link_type_is_reported_once_per_type() -> None:
    out: list[Anomaly] = []
    log = AnomalyLog(out, Limits())
    for lt in (147, 147, 147, 148):  # LINKTYPE_USER0/1: nothing can decode them
        assert decode(lt, b"\x00" * 40, 1, 0, log) is None
    assert [(a.name, a.detail.split(";")[0]) for a in out] == [
        ("unsupported-linktype", "link type 147 is not supported"),
        ("unsupported-linktype", "link type 148 is not supported"),
    ]


def test_encrypted_wifi_is_named() -> None:
    from scapy.layers.dot11 import Dot11, RadioTap

    frame = bytes(RadioTap() / Dot11(type=2, subtype=0, FCfield=0x41) / (b"\x00" * 40))
    assert one(127, frame) == (None, ["wifi-encrypted"])


@pytest.mark.parametrize(
    ("fc", "sa", "da"),
    [
        (0, "02:00:00:00:00:02", "02:00:00:00:00:01"),  # ad hoc: DA=addr1, SA=addr2
        (1, "02:00:00:00:00:02", "02:00:00:00:00:03"),  # ToDS: BSSID=addr1, SA=addr2, DA=addr3
        (2, "02:00:00:00:00:03", "02:00:00:00:00:01"),  # FromDS: DA=addr1, BSSID=addr2, SA=addr3
        (3, "02:00:00:00:00:04", "02:00:00:00:00:03"),  # WDS: RA, TA, DA=addr3, SA=addr4
    ],
)
def test_wifi_source_and_destination_macs(fc: int, sa: str, da: str) -> None:
    from scapy.layers.dot11 import Dot11, RadioTap
    from scapy.layers.l2 import LLC, SNAP

    dot11 = Dot11(
        type=2,
        subtype=0,
        FCfield=fc,
        addr1="02:00:00:00:00:01",
        addr2="02:00:00:00:00:02",
        addr3="02:00:00:00:00:03",
        addr4="02:00:00:00:00:04",
    )
    frame = bytes(RadioTap() / dot11 / LLC() / SNAP(code=0x0800)) + ipv4(tcp(b"wifi"))
    seg, _ = one(127, frame)
    assert seg is not None and seg.payload == b"wifi"
    assert (seg.src_mac, seg.dst_mac) == (sa, da)


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([0, 1, 12, 101, 104, 108, 113, 129, 228, 229, 239, 276]), st.binary(max_size=120))
def test_any_bytes_decode_without_exceptions(linktype: int, data: bytes) -> None:
    seg = decode(linktype, data, 1, 0, _drop)
    if seg is not None:
        assert seg.payload in data


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60), st.integers(min_value=0, max_value=60))
def test_mutated_real_packet_never_raises(noise: bytes, at: int) -> None:
    pkt = bytearray(ether(ipv6(tcp(b"payload"))))
    pkt[at : at + len(noise)] = noise
    seg = decode(1, bytes(pkt), 1, 0, _drop)
    if seg is not None:
        assert seg.payload in pkt


# -------------------------------------------------------------------------------------------
# TCP checksums (counted, never acted on: reliability row D4)


@pytest.mark.parametrize("v6", [False, True])
@pytest.mark.parametrize("payload", [b"GET / HTTP/1.1\r\n\r\n", b"odd length!", b"\xff" * 1461])
def test_tcp_checksum_of_packets_scapy_built(v6: bool, payload: bytes) -> None:
    """scapy fills in correct checksums; one flipped payload bit or a zeroed checksum is wrong."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    ip = IPv6(src="2001:db8::1", dst="2001:db8::2") if v6 else IP(src="10.0.0.1", dst="10.0.0.2")
    good = bytes(Ether() / ip / TCP(sport=40000, dport=8000, flags="PA", seq=7) / payload)
    seg, _ = one(1, good)
    assert seg is not None and seg.payload == payload and seg.checksum_ok is True
    bad = good[:-1] + bytes([good[-1] ^ 0x01])
    seg, _ = one(1, bad)
    assert seg is not None and seg.checksum_ok is False
    empty, _ = one(1, bytes(Ether() / ip / TCP(sport=40000, dport=8000, flags="A")))
    assert empty is not None and empty.checksum_ok is None  # no payload: not counted


def test_tcp_checksum_not_judged_on_cut_packets() -> None:
    """A packet cut by the snap length cannot be checked: None, not False."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    whole = bytes(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="PA") / (b"x" * 400))
    seg, names = one(1, whole[:200])
    assert seg is not None and seg.checksum_ok is None and "truncated-ip" in names


CHECKSUMMED = [
    "ndpi/1kxun.pcap",
    "zeek/docker-http-upgrade.pcap",
    "pcapplusplus/raw_ip.pcap",
    "ndn-tools/ipv6-websocket-segmented.pcap",
]


@pytest.mark.parametrize("rel", CHECKSUMMED)
def test_tcp_checksums_match_tshark(rel: str) -> None:
    """Good and bad checksums (offload captures among them) as tshark's validation says."""
    import shutil
    import subprocess

    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed")
    fields = ["-Y", "tcp.len>0", "-T", "fields", "-e", "frame.number", "-e", "tcp.checksum.status"]
    argv = ["tshark", "-n", "-r", str(DATA / rel), "-o", "tcp.check_checksum:TRUE", *fields]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    theirs = {int(frame): status == "1" for frame, status in rows if status in ("0", "1")}
    found, _ = segments(rel)
    ours = {n: seg.checksum_ok for n, seg in found.items() if seg.payload and seg.checksum_ok is not None}
    assert ours == theirs
    if rel != "zeek/docker-http-upgrade.pcap":  # that one is all offload: every checksum wrong
        assert True in ours.values() and False in ours.values()
