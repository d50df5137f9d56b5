"""The capture reader against real files (counts from tshark) and against hostile ones.

The promise tested here (reliability.md §2.A-C, G3): every record a file holds is read, with
Wireshark's frame numbers and exact nanosecond timestamps; a file that is not readable at all is
one `CaptureError`; damage after some records ends reading with one named anomaly giving the
record count and byte offset, and never an allocation sized by a length field.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import sys
import threading
import tracemalloc
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

import pytest
from capbuild import (
    block,
    epb,
    http_packet,
    idb,
    option,
    pb,
    pcap_file,
    pcap_header,
    pcap_record,
    pcapng_file,
    shb,
    spb,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.errors import CaptureError
from analyzer.limits import DEFAULT_LIMITS, Limits
from analyzer.model import Anomaly, InputSummary
from analyzer.sources.decode import AnomalyLog
from analyzer.sources.pcapfile import Record, open_input, read_records

DATA = Path(__file__).parent / "data" / "public"

# Packets per file, computed once (tshark/capinfos 4.0.17, Debian 12) with
#   tshark -r F -T fields -e frame.number | wc -l      and      capinfos -c -M F
# Both agree on every file except le-difficult-test202.pcapng, where tshark also numbers its 3
# custom blocks as frames (11) and capinfos counts 8 packets: we yield 8 records numbered like
# tshark's frames (see test_frame_numbers_follow_wireshark_across_sections).
PACKETS = {
    "arkime/80211http.pcap": 26,
    "arkime/arkime_synthetic.pcap": 918,
    "arkime/bigendian.pcap": 2,
    "arkime/tcp-reassembly-synthetic.pcap": 106,
    "arkime/websocket.pcap": 19,
    "arkime/wireshark-retrans.pcap": 108,
    "gopacket/test_loopback.pcap": 24,
    "libpcap/http_PPI.pcap": 5,
    "ndn-tools/ipv4-websocket-segmented.pcap": 23,
    "ndn-tools/ipv6-websocket-segmented.pcap": 13,
    "ndpi/1kxun.pcap": 1723,
    "ndpi/false_positives.pcapng": 120,
    "ndpi/fuzz-2006-09-29-28586.pcap": 131,
    "ndpi/http-lines-split.pcap": 14,
    "ndpi/http_origin_different_than_host.pcap": 4,
    "ndpi/tls_heur__vmess-websocket.pcapng": 100,
    "pcap2har-mikekap/firefox-tls13-facebook-dsb.pcapng": 115,
    "pcapng-test-generator/be-basic-test006.pcapng": 5,
    "pcapng-test-generator/le-difficult-test202.pcapng": 8,
    "pcapplusplus/650HttpResponses.pcap": 682,
    "pcapplusplus/HttpMalformedResponse.pcapng": 1,
    "pcapplusplus/PartialHttpRequest.pcap": 1,
    "pcapplusplus/many_interfaces-1.pcapng": 64,
    "pcapplusplus/nanosecs_big_endian.pcap": 10,
    "pcapplusplus/pcapng-example.pcapng": 159,
    "pcapplusplus/raw_ip.pcap": 100,
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
    "tcpdump/arcnet-rfc1201-arp-icmp-http.pcap": 26,
    "tcpdump/bgp_vpn_attrset.pcap": 1,
    "zeek/basic-auth-with-colon.pcap": 12,
    "zeek/broker-websocket.pcap": 22,
    "zeek/docker-http-upgrade.pcap": 200,
    "zeek/empty.pcap": 0,
    "zeek/fragmented-http-reply.pcap": 18,
    "zeek/get-to-ssh-server.pcap": 9,
    "zeek/http-vlan-0.pcap": 14,
    "zeek/http_large_req_8001.pcap": 13,
    "zeek/jupyter-websocket.pcap": 20,
    "zeek/message-too-big-status.pcap": 14,
    "zeek/nflog-http.pcap": 13,
    "zeek/oversized-close-frame.pcapng": 8,
    "zeek/pcapng-multi-interface.pcapng": 6,
    "zeek/pppoe-over-qinq.pcap": 86,
    "zeek/reply-ping-coalesced.pcap": 16,
    "zeek/tls-1.2-stream-keylog.pcap": 237,
    "zeek/tls12-decryption.pcap": 16,
    "zeek/trunc-hdr.pcap": 1,
    "zeek/two-binary-fragments.pcap": 18,
    "zeek/vlan-qinqinq.pcap": 14,
    "zeek/websocket.pcap": 27,
    "zeek/wrong-accept-header.pcap": 12,
    "zeek/wstunnel-http.pcap": 13,
    "zeek/wstunnel-https.pcap": 124,
    "zeek/wstunnel-ssh.pcap": 258,
}
# MANIFEST.md "Malformed? YES - file-level", unreadable from the start: tshark and libpcap refuse.
FATAL = {
    "libpcap/linktype-reserved-field-not-zero.pcap": "reserved bits",
    "libpcap/pcap-invalid-version-1.pcap": "unsupported pcap version 1.4",
    "libpcap/pcapng-invalid-vers-1.pcapng": "unsupported pcapng section version 0.1",
    "libpcap/shb-option-too-long.pcapng": "option 12336 claims 12336 bytes",
}
# MANIFEST.md "Malformed? YES - file-level", readable up to a point: (anomaly, records before it).
# tshark and capinfos read 3214 and 1 records of the first two. For bug-6875 we follow libpcap
# (`tcpdump -r`: 1 packet, then "invalid packet capture length 1409179648"): capinfos reads 2
# because wiretap guesses the 24-byte "modified pcap" record header for that file, which a
# streaming reader cannot do without seeking back.
DAMAGED = {
    "pcap2har-andrewf/out-of-order.pcap": ("capture-truncated", 3214),
    "ndpi/fuzz-2021-10-13.pcap": ("capture-truncated", 1),
    "suricata-verify/bug-6875-01-fuzz.pcap": ("capture-damaged", 1),
}
SKIP_SUFFIXES = (".keylog", ".txt", ".md", ".tsv")


def capture_files() -> list[str]:
    return sorted(
        str(p.relative_to(DATA))
        for p in DATA.rglob("*")
        if p.is_file() and not p.name.endswith(SKIP_SUFFIXES)
    )


def read(source: bytes | str | Path, limits: Limits = DEFAULT_LIMITS) -> tuple[InputSummary, list[Record]]:
    """All records of a capture given as bytes or a path, and the summary reading filled in."""
    summary = InputSummary("<bytes>" if isinstance(source, bytes) else str(source))
    if isinstance(source, bytes):
        return summary, list(read_records(io.BufferedReader(io.BytesIO(source)), summary, limits))
    with open_input(str(source)) as stream:
        return summary, list(read_records(stream, summary, limits))


def names(summary: InputSummary) -> list[str]:
    return [a.name for a in summary.anomalies]


# -------------------------------------------------------------------------------------------
# Every public capture


def test_the_tables_cover_every_public_capture() -> None:
    assert set(capture_files()) == set(PACKETS) | set(FATAL) | set(DAMAGED)


@pytest.mark.parametrize("rel", sorted(PACKETS))
def test_reads_every_record_tshark_reads(rel: str) -> None:
    summary, records = read(DATA / rel)
    assert len(records) == summary.packets == PACKETS[rel]
    assert summary.readable_to_end
    assert not {"capture-truncated", "capture-damaged"} & set(names(summary))
    assert summary.format.startswith(("pcap", "pcapng"))
    stream_size = (DATA / rel).stat().st_size if not rel.endswith(".gz") else 1692
    assert summary.bytes_read == stream_size  # every byte accounted for


@pytest.mark.parametrize("rel", sorted(FATAL))
def test_refuses_files_libpcap_refuses(rel: str) -> None:
    with pytest.raises(CaptureError, match=FATAL[rel]) as exc:
        read(DATA / rel)
    assert "\n" not in str(exc.value) and rel in str(exc.value)


@pytest.mark.parametrize("rel", sorted(DAMAGED))
def test_damaged_files_keep_the_records_before_the_damage(rel: str) -> None:
    name, count = DAMAGED[rel]
    summary, records = read(DATA / rel)
    assert len(records) == summary.packets == count
    assert not summary.readable_to_end
    damage = [a for a in summary.anomalies if a.name in ("capture-truncated", "capture-damaged")]
    assert [a.name for a in damage] == [name]
    assert f"after {count} records" in damage[0].detail
    assert f"byte offset {summary.bytes_read}" in damage[0].detail


def test_truncated_last_record_offset_matches_the_file() -> None:
    # out-of-order.pcap: tcpdump says "tried to read 856 captured bytes, only got 806"
    size = (DATA / "pcap2har-andrewf/out-of-order.pcap").stat().st_size
    summary, _ = read(DATA / "pcap2har-andrewf/out-of-order.pcap")
    assert summary.bytes_read == size - 16 - 806
    assert "needs 856 captured bytes, only 806" in summary.anomalies[-1].detail


def test_old_pcap_with_swapped_lengths_reads_like_libpcap() -> None:
    # fuzz-2021-10-13: pcap 2.0 (caplen/len written swapped), reserved-free FCS bits in the
    # link-type field, a nanosecond fraction >= 10^9, then 2 stray bytes: tcpdump reads 1 packet
    summary, records = read(DATA / "ndpi/fuzz-2021-10-13.pcap")
    assert summary.format == "pcap-ns"
    (rec,) = records
    assert (rec.linktype, len(rec.data), rec.wirelen) == (0, 197, 524501)
    assert rec.ts_ns == 980658802 * 10**9 + 1882137472  # what wiretap stores (secs, nsecs)
    assert {"bad-timestamp", "capture-truncated", "bad-snaplen"} <= set(names(summary))


# -------------------------------------------------------------------------------------------
# Timestamps, link types, frame numbers (facts from tshark -T fields -e frame.time_epoch etc.)


def test_frame_numbers_follow_wireshark_across_sections() -> None:
    # tshark frames 1, 7 and 10 are custom blocks (shown as "data"); the others are packets
    # from 3 sections of different byte order, with 2 SPBs (no timestamp: previous one reused)
    _, records = read(DATA / "pcapng-test-generator/le-difficult-test202.pcapng")
    assert [r.frame for r in records] == [2, 3, 4, 5, 6, 8, 9, 11]
    assert [r.linktype for r in records] == [1, 1, 0, 1, 1, 1, 1, 0]
    assert [len(r.data) for r in records] == [96, 96, 168, 128, 128, 128, 128, 168]
    assert [r.wirelen for r in records] == [314, 342, 168, 314, 342, 314, 342, 168]
    assert records[0].ts_ns == 1340954905_298858000
    assert records[2].ts_ns == 1340954905_301858000
    assert records[3].ts_ns == records[2].ts_ns  # SPB: no timestamp of its own


def test_big_endian_pcapng_two_link_types() -> None:
    # tshark -e frame.interface_id -e frame.protocols: eth, null, eth, eth, eth
    _, records = read(DATA / "pcapng-test-generator/be-basic-test006.pcapng")
    assert [r.linktype for r in records] == [1, 0, 1, 1, 1]
    assert [r.frame for r in records] == [1, 2, 3, 4, 5]


def test_pcapng_interfaces_with_different_link_types_and_resolutions() -> None:
    summary, records = read(DATA / "pcapplusplus/pcapng-example.pcapng")
    assert summary.format == "pcapng"
    by_frame = {r.frame: r for r in records}
    # tshark: frames 1-59 on interface 0 (Ethernet, if_tsresol 9), 60-159 on interface 1 (SLL,
    # microseconds, timestamps near 2^64 us that tshark prints as 18446744073204.126329000)
    assert {r.linktype for r in records[:59]} == {1} and {r.linktype for r in records[59:]} == {113}
    assert by_frame[1].ts_ns == 1422527998_578402281
    assert by_frame[2].ts_ns == 2894531997_938836488
    assert by_frame[60].ts_ns == 18446744073204_126329000
    assert "time-went-backwards" in names(summary)


def test_pcapng_if_tsresol_nanoseconds() -> None:
    # zeek/pcapng-multi-interface.pcapng: interface 0 has if_tsresol 9, interface 1 microseconds
    _, records = read(DATA / "zeek/pcapng-multi-interface.pcapng")
    want = [int(Decimal(t) * 10**9) for t in EPOCHS["zeek/pcapng-multi-interface.pcapng"]]
    assert [r.ts_ns for r in records] == want


# tshark -r F -T fields -e frame.time_epoch (first frames)
EPOCHS = {
    "zeek/pcapng-multi-interface.pcapng": [
        "1767663089.500330493",
        "1767663089.514291940",
        "1767663437.111897000",
        "1767663437.126460000",
        "1767663437.128303000",
        "1767663437.140942000",
    ],
    "pcapplusplus/nanosecs_big_endian.pcap": [
        "1766361926.167647291",
        "1766361926.167658091",
        "1766361926.167666291",
        "1766361926.167712591",
        "1766361926.167716191",
        "1766361926.168382593",
    ],
    "zeek/get-to-ssh-server.pcap": [
        "1770126425.732560000",
        "1770126425.733357000",
        "1770126425.879407000",
    ],
    "arkime/bigendian.pcap": ["1335958313.152630000", "1335958317.529201000"],
}


@pytest.mark.parametrize(
    "rel", ["pcapplusplus/nanosecs_big_endian.pcap", "zeek/get-to-ssh-server.pcap", "arkime/bigendian.pcap"]
)
def test_timestamps_are_exact_nanoseconds(rel: str) -> None:
    summary, records = read(DATA / rel)
    want = [int(Decimal(t) * 10**9) for t in EPOCHS[rel]]
    assert [r.ts_ns for r in records[: len(want)]] == want
    assert summary.format == ("pcap" if rel == "arkime/bigendian.pcap" else "pcap-ns")


def test_many_interfaces_pcapng_link_types() -> None:
    _, records = read(DATA / "pcapplusplus/many_interfaces-1.pcapng")
    # capinfos: 11 interfaces (Ethernet x8, NULL x2, raw IP x1); packets seen on Ethernet and NULL
    assert {r.linktype for r in records} == {0, 1}
    assert [r.frame for r in records] == list(range(1, 65))


# -------------------------------------------------------------------------------------------
# Compressed input and pipes


def test_gzip_is_read_as_a_stream() -> None:
    summary, records = read(DATA / "scapy/http_head.pcapng.gz")
    assert summary.format == "pcapng+gzip"
    assert len(records) == 10 and summary.readable_to_end


class _Stdin:
    def __init__(self, buffer: BinaryIO) -> None:
        self.buffer = buffer


def _through_pipe(payload: bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[InputSummary, list[Record]]:
    """Feed bytes to open_input("-") through a real, non-seekable OS pipe, in small writes."""
    r, w = os.pipe()

    def writer() -> None:
        with os.fdopen(w, "wb", buffering=0) as f:
            for i in range(0, len(payload), 4093):
                f.write(payload[i : i + 4093])

    t = threading.Thread(target=writer)
    t.start()
    reader = os.fdopen(r, "rb")
    monkeypatch.setattr(sys, "stdin", _Stdin(reader))
    try:
        summary = InputSummary("-")
        assert not reader.seekable()
        stream = open_input("-")
        records = list(read_records(stream, summary))
    finally:
        t.join()
        reader.close()
    return summary, records


@pytest.mark.parametrize(
    "rel",
    ["ndpi/1kxun.pcap", "pcapng-test-generator/le-difficult-test202.pcapng", "scapy/http_head.pcapng.gz"],
)
def test_stdin_pipe_gives_the_same_records(rel: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _, from_file = read(DATA / rel)
    summary, from_pipe = _through_pipe((DATA / rel).read_bytes(), monkeypatch)
    assert from_pipe == from_file
    assert summary.readable_to_end


def test_gzip_of_a_pcap_through_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = (DATA / "zeek/websocket.pcap").read_bytes()
    summary, records = _through_pipe(gzip.compress(raw), monkeypatch)
    assert summary.format == "pcap+gzip" and len(records) == 27


def test_truncated_gzip_keeps_what_was_decompressed(tmp_path: Path) -> None:
    raw = pcap_file([http_packet(i) for i in range(200)])
    p = tmp_path / "cut.pcap.gz"
    p.write_bytes(gzip.compress(raw)[:-40])
    summary, records = read(p)
    assert 0 < len(records) <= 200
    assert not summary.readable_to_end
    assert names(summary)[-1] == "capture-truncated"


@pytest.mark.parametrize(
    ("magic", "what"),
    [
        (b"BZh91AY&SY", "bzip2-compressed"),
        (b"\xfd7zXZ\x00\x00\x04", "xz-compressed"),
        (b"\x28\xb5\x2f\xfd\x24\x00", "zstd-compressed"),
        (b"\x04\x22\x4d\x18\x64\x40", "lz4-compressed"),
    ],
)
def test_other_compressors_are_named(tmp_path: Path, magic: bytes, what: str) -> None:
    p = tmp_path / "x.pcap.z"
    p.write_bytes(magic + b"\x00" * 100)
    with pytest.raises(CaptureError, match=f"{what}; decompress it first"):
        open_input(str(p))


# -------------------------------------------------------------------------------------------
# Files that are not captures (§2.A)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="no such file"):
        open_input(str(tmp_path / "nope.pcap"))


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="is a directory"):
        open_input(str(tmp_path))


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.pcap"
    p.write_bytes(b"")
    with pytest.raises(CaptureError, match="empty file"):
        open_input(str(p))
    with pytest.raises(CaptureError, match="empty"):
        read(b"")


def test_permission_denied_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also checked as root (who may read anything) by making open() fail as it would."""
    import analyzer.sources.pcapfile as pcapfile

    p = tmp_path / "secret.pcap"
    p.write_bytes(pcap_file([http_packet()]))

    def denied(*args: object, **kwargs: object) -> BinaryIO:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(pcapfile, "open", denied, raising=False)
    with pytest.raises(CaptureError, match=r"secret\.pcap: permission denied$"):
        open_input(str(p))


def test_empty_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    r, w = os.pipe()
    os.close(w)
    with os.fdopen(r, "rb") as reader:
        monkeypatch.setattr(sys, "stdin", _Stdin(reader))
        with pytest.raises(CaptureError, match="<stdin>: empty input"):
            open_input("-")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_permission_denied(tmp_path: Path) -> None:
    p = tmp_path / "secret.pcap"
    p.write_bytes(pcap_file([http_packet()]))
    p.chmod(0)
    with pytest.raises(CaptureError, match="permission denied"):
        open_input(str(p))


def test_text_file_names_its_first_bytes() -> None:
    with pytest.raises(CaptureError, match=r"not a pcap or pcapng capture file.*47 45 54 20"):
        read(b"GET / HTTP/1.1\r\nHost: example\r\n\r\n")


def test_ten_bytes_of_a_pcap_header() -> None:
    with pytest.raises(CaptureError, match="cut short: the pcap file header is 10 of 24 bytes"):
        read(pcap_header()[:10])


def test_header_only_is_an_empty_capture() -> None:
    summary, records = read(pcap_header())
    assert records == [] and summary.readable_to_end and summary.bytes_read == 24


@pytest.mark.parametrize(("major", "minor"), [(2, 5), (9, 9), (1, 4), (3, 0)])
def test_unsupported_pcap_versions(major: int, minor: int) -> None:
    with pytest.raises(CaptureError, match=f"unsupported pcap version {major}.{minor}"):
        read(pcap_header(major=major, minor=minor) + pcap_record(http_packet()))


def test_accepted_pcap_versions() -> None:
    for major, minor in [(2, 0), (2, 1), (2, 2), (2, 3), (2, 4), (543, 0)]:
        pkt = http_packet()
        # before 2.3 (and DG/UX 543.0) the record header holds (len, caplen)
        swapped = (major, minor) < (2, 3) or major == 543
        rec = pcap_record(
            pkt, caplen=len(pkt) + 10 if swapped else None, wirelen=len(pkt) if swapped else None
        )
        _, records = read(pcap_header(major=major, minor=minor) + rec)
        assert len(records) == 1 and records[0].data == pkt
        assert records[0].wirelen == (len(pkt) + 10 if swapped else len(pkt))


# -------------------------------------------------------------------------------------------
# Damage inside classic pcap (§2.B)


def test_huge_caplen_is_damage_and_allocates_nothing() -> None:
    data = pcap_file([http_packet(0), http_packet(1)]) + pcap_record(b"x" * 16, caplen=0xFFFFFFFF)
    tracemalloc.start()
    try:
        summary, records = read(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert len(records) == 2
    (damage,) = [a for a in summary.anomalies if a.name == "capture-damaged"]
    assert "4294967295" in damage.detail and "after 2 records" in damage.detail
    assert f"byte offset {len(data) - 32}" in damage.detail


def test_caplen_just_over_the_limit_is_damage() -> None:
    summary, records = read(pcap_header() + pcap_record(b"", caplen=262_145))
    assert records == [] and names(summary) == ["capture-damaged"]


def test_caplen_at_the_limit_is_read() -> None:
    big = bytes(262_144)
    summary, records = read(pcap_header(snaplen=262_144) + pcap_record(big))
    assert len(records) == 1 and records[0].data == big and summary.readable_to_end


def test_recoverable_record_oddities_are_anomalies_and_reading_goes_on() -> None:
    pkt = http_packet()
    data = (
        pcap_header(snaplen=40)
        + pcap_record(pkt)  # caplen > snaplen
        + pcap_record(pkt, frac=1_000_000)  # fraction >= 10^6 us
        + pcap_record(pkt, sec=1_600_000_000)  # earlier than the previous record
        + pcap_record(pkt, wirelen=10)  # caplen > on-wire length
        + pcap_record(b"")  # zero-length record: counted, yielded
    )
    summary, records = read(data)
    assert len(records) == 5 and summary.readable_to_end
    assert set(names(summary)) == {
        "caplen-exceeds-snaplen",
        "bad-timestamp",
        "time-went-backwards",
        "caplen-exceeds-wirelen",
    }
    assert records[1].ts_ns == 1_700_000_001 * 10**9  # libpcap adds the fraction as it is
    assert records[4].data == b""


def test_anomalies_are_rate_limited_with_a_count() -> None:
    limits = Limits(max_anomaly_samples=5)
    pkt = http_packet()
    data = pcap_header(snaplen=20) + b"".join(pcap_record(pkt, frac=i) for i in range(100))
    summary, records = read(data, limits)
    assert len(records) == 100
    assert names(summary) == ["caplen-exceeds-snaplen"] * 5
    assert summary.anomalies[-1].detail.endswith("(+95 more not listed)")
    assert summary.anomalies[-1].frame == 5


def test_anomaly_log_once_and_counts() -> None:
    out: list[Anomaly] = []
    log = AnomalyLog(out, Limits(max_anomaly_samples=2))
    for i in range(4):
        log(Anomaly("x", "d", i))
    assert [a.frame for a in out] == [0, 1] and out[1].detail == "d (+2 more not listed)"
    assert log.counts == {"x": 4}
    assert log.once("k") and not log.once("k")


def test_cut_at_every_byte_offset_pcap() -> None:
    """G3: a 10-record pcap cut anywhere: records before the cut, one damage line, no traceback."""
    packets = [http_packet(i) for i in range(10)]
    data = pcap_file(packets)
    ends = []  # end offset of each record
    pos = 24
    for p in packets:
        pos += 16 + len(p)
        ends.append(pos)
    for cut in range(len(data) + 1):
        if cut < 24:
            with pytest.raises(CaptureError):
                read(data[:cut])
            continue
        summary, records = read(data[:cut])
        complete = sum(1 for e in ends if e <= cut)
        assert len(records) == summary.packets == complete, cut
        assert [r.data for r in records] == packets[:complete]
        clean = cut == 24 or cut in ends
        assert summary.readable_to_end == clean, cut
        if not clean:
            assert names(summary) == ["capture-truncated"], cut
            assert f"byte offset {summary.bytes_read}" in summary.anomalies[0].detail
            assert summary.bytes_read == (ends[complete - 1] if complete else 24)


def test_cut_at_every_byte_offset_pcapng() -> None:
    packets = [http_packet(i) for i in range(10)]
    head = shb() + idb(1)
    blocks = [epb(p, ts=1_700_000_000_000_000 + i) for i, p in enumerate(packets)]
    data = head + b"".join(blocks)
    ends = []
    pos = len(head)
    for b in blocks:
        pos += len(b)
        ends.append(pos)
    shb_len = len(shb())
    for cut in range(len(data) + 1):
        if cut < shb_len:
            with pytest.raises(CaptureError):
                read(data[:cut])
            continue
        summary, records = read(data[:cut])
        complete = sum(1 for e in ends if e <= cut)
        assert len(records) == complete, cut
        assert [r.data for r in records] == packets[:complete]
        clean = cut in (shb_len, len(head)) or cut in ends
        assert summary.readable_to_end == clean, cut
        if not clean:
            assert names(summary) == ["capture-truncated"], cut


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400), st.sampled_from(["pcap", "pcapng"]))
def test_garbage_after_a_valid_header_never_raises_anything_else(tail: bytes, kind: str) -> None:
    head = pcap_header() if kind == "pcap" else shb() + idb(1)
    try:
        summary, records = read(head + tail)
    except CaptureError:
        pytest.fail("a valid header must never become a CaptureError")
    assert summary.packets == len(records)
    for r in records:
        assert len(r.data) <= len(tail)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=64))
def test_any_bytes_are_read_or_refused_cleanly(blob: bytes) -> None:
    try:
        read(blob)
    except CaptureError as e:
        assert "\n" not in str(e)


# -------------------------------------------------------------------------------------------
# Damage inside pcapng (§2.C)


def _ng(*blocks: bytes) -> bytes:
    return shb() + b"".join(blocks)


def test_pcapng_block_length_huge_is_damage_and_allocates_nothing() -> None:
    data = _ng(idb(), epb(http_packet()), struct.pack("<II", 6, 0xFFFFFFF0) + b"\x00" * 64)
    tracemalloc.start()
    try:
        summary, records = read(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024
    assert len(records) == 1
    assert names(summary) == ["capture-damaged"]
    assert "4294967280" in summary.anomalies[0].detail


@pytest.mark.parametrize(
    ("blocks", "why"),
    [
        ((idb(), struct.pack("<II", 6, 8) + b"\x00" * 8), "length 8 < 12"),
        ((idb(), epb(http_packet())[:-4] + struct.pack("<I", 999)), "does not match"),
        ((epb(http_packet()),), "packet on interface 0, but the section defines 0"),
        ((idb(), epb(http_packet(), ifid=3)), "packet on interface 3, but the section defines 1"),
        ((idb(), epb(http_packet(), caplen=500)), "packet claims 500 captured bytes, its block holds"),
        ((idb(options=struct.pack("<HH", 2, 200)),), "option 2 claims 200 bytes"),
        ((spb(http_packet()),), "simple packet block before any interface"),
        ((idb(), shb(major=2)), "unsupported pcapng section version 2.0"),
    ],
)
def test_pcapng_damage(blocks: tuple[bytes, ...], why: str) -> None:
    summary, records = read(_ng(*blocks))
    assert records == []
    assert names(summary) == ["capture-damaged"]
    assert why in summary.anomalies[0].detail
    assert not summary.readable_to_end


def test_pcapng_epb_never_returns_bytes_outside_its_block() -> None:
    pkt = http_packet()
    good = epb(pkt)
    _, records = read(_ng(idb(), good, good))
    assert [r.data for r in records] == [pkt, pkt]


def test_pcapng_if_tsresol_and_tsoffset() -> None:
    pkt = http_packet()
    ticks = 1_700_000_000 * 2**20 + 2**19  # 2^-20 s ticks: x.5 s
    data = _ng(
        idb(options=option(9, b"\x94") + option(14, struct.pack("<q", 100))),  # 2^-20, +100 s
        idb(options=option(9, b"\x0c")),  # 10^-12 (picoseconds)
        idb(options=option(9, b"\x03")),  # 10^-3 (milliseconds)
        epb(pkt, ifid=0, ts=ticks),
        epb(pkt, ifid=1, ts=1_000_000_123_456_789_012),
        epb(pkt, ifid=2, ts=1_700_000_000_123),
        idb(options=option(9, b"\x7f")),  # 10^-127: absurd, microseconds assumed
        epb(pkt, ifid=3, ts=1_700_000_000_000_001),
    )
    summary, records = read(data)
    assert [r.ts_ns for r in records] == [
        1_700_000_100_500_000_000,
        1_000_000_123_456_789,
        1_700_000_000_123_000_000,
        1_700_000_000_000_001_000,
    ]
    assert "bad-tsresol" in names(summary)


def test_pcapng_spb_obsolete_pb_and_skipped_blocks() -> None:
    pkt = http_packet()
    data = _ng(
        idb(snaplen=30),
        block(5, b"\x00" * 12),  # ISB: skipped
        block(4, b"\x00" * 4),  # NRB: skipped
        block(0x0A, b"\x00" * 16),  # DSB: skipped
        epb(pkt, ts=1_700_000_000_000_000),
        spb(pkt[:30], wirelen=len(pkt)),
        pb(pkt, ts=1_700_000_001_000_000),
        block(0x40000BAD, b"\x00" * 8),  # custom block: a frame number in Wireshark, not a packet
        block(0x12345678, b"\x00" * 8),  # unknown: skipped
        epb(pkt, ts=1_700_000_002_000_000),
    )
    summary, records = read(data)
    assert [r.frame for r in records] == [1, 2, 3, 5]
    assert [len(r.data) for r in records] == [len(pkt), 30, len(pkt), len(pkt)]
    assert records[1].ts_ns == records[0].ts_ns  # SPB: previous timestamp
    assert records[1].wirelen == len(pkt)
    assert summary.readable_to_end


def test_pcapng_unaligned_block_length_is_read_with_an_anomaly() -> None:
    pkt = http_packet()
    body = struct.pack("<IIIII", 0, 0, 0, len(pkt), len(pkt)) + pkt
    odd = struct.pack("<II", 6, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))
    assert len(odd) % 4 != 0
    summary, records = read(_ng(idb(), odd, epb(pkt)))
    assert len(records) == 2 and "pcapng-block-length-unaligned" in names(summary)


def test_pcapng_sections_of_both_byte_orders() -> None:
    pkt = http_packet()
    data = (
        shb("<")
        + idb(1, order="<")
        + epb(pkt, order="<")
        + shb(">")
        + idb(0, order=">")
        + idb(1, order=">")
        + epb(pkt, ifid=1, order=">")
    )
    _, records = read(data)
    assert [(r.frame, r.linktype) for r in records] == [(1, 1), (2, 1)]


def test_pcapng_first_shb_problems_are_fatal() -> None:
    with pytest.raises(CaptureError, match="bad byte-order magic"):
        read(b"\x0a\x0d\x0d\x0a" + b"\x1c\x00\x00\x00" + b"ABCD" + b"\x00" * 16)
    with pytest.raises(CaptureError, match="trailer does not match"):
        read(shb()[:-4] + struct.pack("<I", 999))
    with pytest.raises(CaptureError, match="bad length"):
        read(b"\x0a\x0d\x0d\x0a" + struct.pack("<I", 0xFFFFFFF0) + b"\x4d\x3c\x2b\x1a" + b"\x00" * 16)
    with pytest.raises(CaptureError, match=r"unsupported pcapng section version 0\.1"):
        read(shb(major=0, minor=1))


def test_pcapng_file_builder_round_trip() -> None:
    packets = [http_packet(i) for i in range(3)]
    _, records = read(pcapng_file(packets))
    assert [r.data for r in records] == packets
    assert [r.ts_ns for r in records] == [1_700_000_000_000_000_000 + i * 1000 for i in range(3)]


def test_pcapng_interface_facts_follow_each_packet() -> None:
    """Interface 0 means another interface in a new section, and a packet block on another
    interface may come between two on the same one: each packet gets its own interface's link
    type and clock."""
    from capbuild import idb, option, pb, shb

    nano = option(9, b"\x09")  # if_tsresol: 10^-9
    data = (
        shb() + idb(1) + idb(113, options=nano)
        + epb(http_packet(), ifid=0, ts=1_000_000) + pb(b"\x00" * 20, ifid=1, ts=5_000_000_000)
        + epb(http_packet(), ifid=0, ts=2_000_000)
        + shb() + idb(113, options=nano) + epb(b"\x00" * 20, ifid=0, ts=7_000_000_000)
    )
    _, records = read(data)
    assert [(r.linktype, r.ts_ns) for r in records] == [
        (1, 1_000_000_000),  # microseconds
        (113, 5_000_000_000),  # nanoseconds
        (1, 2_000_000_000),
        (113, 7_000_000_000),  # interface 0 of the second section
    ]
