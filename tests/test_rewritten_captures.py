"""Real captures rewritten with scapy: reordered, retransmitted and re-split segments.

The bytes on the wire come from real software (captures/, recorded on loopback); only their
order and segmentation change. The reconstructed request and the verdict must not.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.packet import Packet, Raw
from scapy.utils import rdpcap, wrpcap

from analyzer.config import Config
from analyzer.run import analyze_path

CAPTURES = Path(__file__).parent.parent / "captures"
CONFIG = Config(auth_key="wsdiag-test-key")  # how the recorder signed the tokens (captures/README.md)


def facts(path: Path) -> list[tuple[object, ...]]:
    report = analyze_path(str(path), CONFIG)
    return [
        (
            d.handshake.request.headers if d.handshake.request else None,
            d.handshake.response.status if d.handshake.response else None,
            [f.text for f in d.handshake.frames if f.text],
            d.cause.name if d.cause else None,
        )
        for d in report.diagnoses
    ]


def resplit(pkt: Packet, size: int) -> list[Packet]:
    """The same TCP payload carried by several smaller segments."""
    data = bytes(pkt[Raw].load)
    out = []
    for off in range(0, len(data), size):
        p = pkt.copy()
        p[TCP].seq = (pkt[TCP].seq + off) % 2**32
        p[Raw].load = data[off : off + size]
        if p.haslayer(IP):
            del p[IP].len, p[IP].chksum
        else:
            del p[IPv6].plen
        del p[TCP].chksum
        out.append(p)
    return out


def rewrite(src: Path, dst: Path, seed: int) -> None:
    rng = random.Random(seed)
    pkts = list(rdpcap(str(src)))
    first_data = next(i for i, p in enumerate(pkts) if p.haslayer(Raw) and p.haslayer(TCP))
    request = pkts[first_data]
    pieces = resplit(request, rng.randint(7, 40))
    assert len(pieces) >= 3
    shuffled = rng.sample(pieces, len(pieces))
    shuffled.insert(rng.randint(0, len(shuffled)), rng.choice(pieces))  # a retransmitted copy
    wrpcap(str(dst), pkts[:first_data] + shuffled + pkts[first_data + 1 :])


@pytest.mark.parametrize(
    "name",
    [
        "xiaozhi-auth-failed-no-token.pcap",
        "xiaozhi-good-handshake-ipv6.pcap",
        "nginx-deny-403.pcap",
        "xiaozhi-auth-failed-expired-token.pcap",
    ],
)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_reordered_resplit_and_retransmitted_request_gives_same_result(
    name: str, seed: int, tmp_path: Path
) -> None:
    original = CAPTURES / name
    rewritten = tmp_path / name
    rewrite(original, rewritten, seed)
    assert facts(rewritten) == facts(original)
    assert facts(original) and facts(original)[0][0] is not None
