"""wsframes: real frames (made by websockets, or captured) decode; hostile ones stay bounded."""

from __future__ import annotations

import dataclasses
import itertools
import struct
import tracemalloc
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame
from websockets.frames import Opcode as WsOp

from analyzer.limits import Limits
from analyzer.model import Opcode, WsFrame
from analyzer.wsframes import Deflate, FrameDecoder, negotiated_deflate

XIAOZHI_EXT = "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"


def server_pmd(d: Deflate, *, client: bool = False) -> PerMessageDeflate:
    """websockets' own compressor, configured as the sending side of `d`."""
    if client:
        return PerMessageDeflate(
            d.server_no_context_takeover,
            d.client_no_context_takeover,
            d.server_max_window_bits,
            d.client_max_window_bits,
        )
    return PerMessageDeflate(
        d.client_no_context_takeover,
        d.server_no_context_takeover,
        d.client_max_window_bits,
        d.server_max_window_bits,
    )


def raw(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    mask: bytes | None = None,
    length: int | None = None,
    len_form: int | None = None,
) -> bytes:
    """A frame built by hand, for what websockets refuses to serialize (protocol violations)."""
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0) | opcode
    m = 0x80 if mask is not None else 0
    form = len_form if len_form is not None else (7 if n < 126 else 16 if n < 65536 else 64)
    if form == 7:
        head = bytes([b0, m | n])
    elif form == 16:
        head = bytes([b0, m | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, m | 127]) + struct.pack("!Q", n)
    if mask is not None:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        head += mask
    return head + payload


def decode(
    direction: str,
    data: bytes,
    deflate: Deflate | None = None,
    limits: Limits | None = None,
    chunks: list[int] | None = None,
) -> tuple[list[WsFrame], FrameDecoder]:
    dec = FrameDecoder(direction, deflate, limits or Limits())
    out: list[WsFrame] = []
    cuts = [0, *(chunks or []), len(data)]
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        out += dec.feed(data[a:b], ts_ns=1000 + i, frame=10 + i)
    return out, dec


def strip_time(frames: list[WsFrame]) -> list[WsFrame]:
    return [dataclasses.replace(f, ts_ns=0, frame=None) for f in frames]


# -- negotiation -----------------------------------------------------------------------------


def test_negotiated_deflate() -> None:
    assert negotiated_deflate([]) is None
    assert negotiated_deflate(["x-webkit-deflate-frame"]) is None
    assert negotiated_deflate([XIAOZHI_EXT]) == Deflate(False, False, 12, 12)
    assert negotiated_deflate(["permessage-deflate; client_max_window_bits=15"]) == Deflate()
    assert negotiated_deflate(
        ["foo, Permessage-Deflate; Server_No_Context_Takeover; client_max_window_bits"]
    ) == (Deflate(server_no_context_takeover=True))
    assert negotiated_deflate(
        ["bar", 'permessage-deflate; client_no_context_takeover; server_max_window_bits="9"']
    ) == (Deflate(client_no_context_takeover=True, server_max_window_bits=9))
    assert negotiated_deflate(["permessage-deflate; server_max_window_bits=99"]) == Deflate()


# -- plain frames ----------------------------------------------------------------------------


def test_server_text_and_close_as_xiaozhi_sends_them() -> None:
    data = Frame(WsOp.TEXT, "认证失败".encode()).serialize(mask=False) + Frame(
        WsOp.CLOSE, struct.pack("!H", 1000)
    ).serialize(mask=False)
    frames, dec = decode("server", data)
    assert [f.text for f in frames] == ["认证失败", None]
    assert frames[0].anomalies == () and not frames[0].masked and frames[0].length == 12
    assert (frames[1].close_code, frames[1].close_reason, frames[1].anomalies) == (1000, "", ())
    assert dec.done and dec.stop_reason == "close"
    assert frames[0].ts_ns == 1000 and frames[0].frame == 10


def test_client_frames_are_unmasked() -> None:
    data = b"".join(
        Frame(WsOp.TEXT, f'{{"type":"hello","n":{i}}}'.encode() * 9).serialize(mask=True) for i in range(3)
    )
    frames, _ = decode("client", data)
    assert [f.text for f in frames] == [f'{{"type":"hello","n":{i}}}' * 9 for i in range(3)]
    assert all(f.masked and f.anomalies == () for f in frames)


def test_mask_direction_anomalies() -> None:
    frames, _ = decode("client", Frame(WsOp.TEXT, b"hi").serialize(mask=False))
    assert frames[0].anomalies == ("unmasked-client-frame",) and frames[0].payload == b"hi"
    frames, _ = decode("server", Frame(WsOp.TEXT, b"hi").serialize(mask=True))
    assert frames[0].anomalies == ("masked-server-frame",) and frames[0].payload == b"hi"


def test_data_after_close_is_ignored_and_counted() -> None:
    data = Frame(WsOp.CLOSE, b"").serialize(mask=False) + Frame(WsOp.TEXT, b"late").serialize(mask=False)
    frames, dec = decode("server", data)
    assert len(frames) == 1 and frames[0].close_code is None and frames[0].anomalies == ()
    assert dec.ignored_bytes == 6
    assert dec.feed(b"more", 0, None) == [] and dec.ignored_bytes == 10


def test_max_frames_stops_decoding() -> None:
    data = Frame(WsOp.PING, b"p").serialize(mask=False) * 40
    frames, dec = decode("server", data, limits=Limits(max_frames=16))
    assert len(frames) == 16 and dec.stop_reason == "max-frames"
    assert dec.ignored_bytes == 24 * 3


# -- close frames ----------------------------------------------------------------------------

VALID = [1000, 1001, 1002, 1003, 1007, 1008, 1011, 1012, 1014, 3000, 4000, 4999]
INVALID = [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID + INVALID)
def test_close_codes(code: int) -> None:
    frames, _ = decode("server", raw(Opcode.CLOSE, struct.pack("!H", code) + "再见".encode()))
    f = frames[0]
    assert (f.close_code, f.close_reason) == (code, "再见")
    assert f.anomalies == (() if code in VALID else ("invalid-close-code",))


def test_close_payload_of_one_byte_and_bad_reason() -> None:
    frames, _ = decode("server", raw(Opcode.CLOSE, b"\x03"))
    assert frames[0].anomalies == ("bad-close-payload",) and frames[0].close_code is None
    frames, _ = decode("server", raw(Opcode.CLOSE, b"\x03\xe8ab\xffc"))
    assert frames[0].close_reason == "ab\ufffdc" and frames[0].anomalies == ("invalid-utf8",)


# -- protocol violations ---------------------------------------------------------------------


def test_control_frame_violations_and_reserved_opcodes() -> None:
    frames, _ = decode("server", raw(Opcode.PING, b"x", fin=False))
    assert frames[0].anomalies == ("fragmented-control-frame",)
    frames, _ = decode("server", raw(Opcode.PONG, b"y" * 126))
    assert frames[0].anomalies == ("control-frame-too-long",) and frames[0].length == 126
    frames, _ = decode("server", raw(0x3, b"z") + raw(0xB, b"") + raw(Opcode.TEXT, b"ok", rsv2=True))
    assert [f.anomalies for f in frames] == [
        ("reserved-opcode",),
        ("reserved-opcode",),
        ("reserved-bits-set",),
    ]


def test_fragmentation_sequence_anomalies() -> None:
    data = raw(Opcode.CONTINUATION, b"orphan") + raw(Opcode.TEXT, b"a", fin=False) + raw(Opcode.TEXT, b"b")
    frames, _ = decode("server", data)
    assert [f.anomalies for f in frames] == [("unexpected-continuation",), (), ("expected-continuation",)]


def test_non_minimal_length() -> None:
    frames, _ = decode("server", raw(Opcode.TEXT, b"abc", len_form=16) + raw(Opcode.TEXT, b"d", len_form=64))
    assert [(f.payload, f.anomalies) for f in frames] == [
        (b"abc", ("non-minimal-length",)),
        (b"d", ("non-minimal-length",)),
    ]


def test_rsv1_without_extension() -> None:
    frames, _ = decode("server", raw(Opcode.TEXT, b"\xf2\x76", rsv1=True))
    assert frames[0].anomalies == ("rsv1-without-extension",) and frames[0].payload == b"\xf2\x76"
    assert not frames[0].inflated


def test_invalid_utf8_text() -> None:
    frames, _ = decode("server", raw(Opcode.TEXT, b"\xe8\xae"))
    assert frames[0].anomalies == ("invalid-utf8",)


# -- bounds ----------------------------------------------------------------------------------


def test_long_payload_is_cut_and_skipped_then_decoding_resumes() -> None:
    body = bytes(range(256)) * 40  # 10240 bytes
    data = Frame(WsOp.BINARY, body).serialize(mask=True) + Frame(WsOp.TEXT, b"next").serialize(mask=True)
    frames, _ = decode("client", data, chunks=[3, 1000, 5000])
    assert frames[0].payload == body[:4096] and frames[0].truncated and frames[0].length == 10240
    assert frames[1].payload == b"next" and not frames[1].truncated


def test_huge_length_does_not_allocate() -> None:
    header = raw(Opcode.BINARY, length=1 << 62, mask=b"\x01\x02\x03\x04")
    dec = FrameDecoder("client", None)
    chunk = b"\xaa" * 65536
    tracemalloc.start()
    try:
        assert dec.feed(header, 0, 1) == []
        for i in range(160):  # 10 MiB of payload
            assert dec.feed(chunk, i, 2 + i) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024
    (f,) = dec.finish()
    assert f.length == 1 << 62 and f.truncated and f.anomalies == ("incomplete-frame",)
    assert f.payload == bytes(b ^ m for b, m in zip(b"\xaa" * 4096, b"\x01\x02\x03\x04" * 1024, strict=True))
    assert dec.done and dec.stop_reason == "end"


def test_length_with_msb_set_is_fatal() -> None:
    data = b"\x82\x7f" + struct.pack("!Q", 1 << 63) + b"whatever" + raw(Opcode.TEXT, b"x")
    frames, dec = decode("server", data)
    assert len(frames) == 1 and frames[0].anomalies == ("invalid-frame-length",)
    assert dec.done and dec.stop_reason == "invalid-frame-length" and dec.ignored_bytes == 8 + 3


def test_deflate_bomb_is_capped() -> None:
    d = Deflate()
    bomb = Frame(WsOp.BINARY, bytes(8 * 1024 * 1024))
    data = bomb.serialize(mask=False, extensions=[server_pmd(d)])
    assert len(data) < 16_000
    limits = Limits(max_inflate_bytes=1024 * 1024)
    frames, _ = decode("server", data, d, limits)
    assert frames[0].inflated and frames[0].truncated and frames[0].payload == bytes(4096)


# -- permessage-deflate ----------------------------------------------------------------------


def test_compressed_auth_failure_as_xiaozhi_sends_it() -> None:
    d = negotiated_deflate([XIAOZHI_EXT])
    assert d is not None
    pmd = server_pmd(d)
    data = Frame(WsOp.TEXT, "认证失败".encode()).serialize(mask=False, extensions=[pmd]) + Frame(
        WsOp.CLOSE, struct.pack("!H", 1000)
    ).serialize(mask=False, extensions=[pmd])
    frames, dec = decode("server", data, d)
    assert frames[0].rsv1 and frames[0].inflated and frames[0].text == "认证失败"
    assert frames[0].length != 12 and frames[0].anomalies == ()
    assert frames[1].close_code == 1000 and not frames[1].rsv1 and dec.done


@pytest.mark.parametrize("no_takeover", [False, True])
@pytest.mark.parametrize("direction", ["server", "client"])
def test_context_takeover_sequence(direction: str, no_takeover: bool) -> None:
    is_client = direction == "client"
    d = Deflate(
        server_no_context_takeover=no_takeover and not is_client,
        client_no_context_takeover=no_takeover and is_client,
        server_max_window_bits=10,
        client_max_window_bits=11,
    )
    pmd = server_pmd(d, client=is_client)
    msgs = [
        '{"type":"hello","version":1,"transport":"websocket"}',
        '{"type":"hello","version":1}',
        "认证失败" * 3,
    ]
    data = b"".join(Frame(WsOp.TEXT, m.encode()).serialize(mask=is_client, extensions=[pmd]) for m in msgs)
    frames, _ = decode(direction, data, d)
    assert [f.text for f in frames] == msgs
    assert all(f.inflated and f.anomalies == () for f in frames)
    if not no_takeover:
        assert frames[1].length < 12  # really refers back to message 1


def test_takeover_stream_read_without_context_fails_visibly() -> None:
    d = Deflate()
    pmd = server_pmd(d)
    one, two = (
        Frame(WsOp.TEXT, b"KEY=07cb9559eff21e3e34f3").serialize(mask=False, extensions=[pmd]) for _ in "12"
    )
    frames, _ = decode("server", one + two, Deflate(server_no_context_takeover=True))
    assert frames[0].text == "KEY=07cb9559eff21e3e34f3"
    assert frames[1].anomalies == ("inflate-failed",) and not frames[1].inflated
    assert frames[1].payload == two[2:]  # raw bytes kept


def test_fragmented_compressed_message() -> None:
    d = Deflate()
    pmd = server_pmd(d)
    parts = [b'{"type":"tts",', b'"state":"start",', "认证失败".encode()]
    data = b"".join(
        Frame(WsOp.CONT if i else WsOp.TEXT, p, fin=i == 2).serialize(mask=False, extensions=[pmd])
        for i, p in enumerate(parts)
    ) + Frame(WsOp.TEXT, b"after").serialize(mask=False, extensions=[pmd])
    frames, _ = decode("server", data, d)
    assert [f.rsv1 for f in frames] == [True, False, False, True]
    assert all(f.inflated and f.anomalies == () for f in frames)
    assert b"".join(f.payload for f in frames[:3]) == b"".join(parts)
    assert frames[3].text == "after"


def test_garbage_compressed_payload() -> None:
    frames, _ = decode(
        "server", raw(Opcode.TEXT, b"\xff\xff\xff\xff", rsv1=True) + raw(Opcode.TEXT, b"ok"), Deflate()
    )
    assert frames[0].anomalies == ("inflate-failed",) and frames[0].payload == b"\xff\xff\xff\xff"
    assert frames[1].text == "ok"


def test_incomplete_compressed_frame_inflates_what_arrived() -> None:
    d = Deflate()
    text = "认证失败 " + "".join(f"{i:x}" for i in range(2000))
    data = Frame(WsOp.TEXT, text.encode()).serialize(mask=False, extensions=[server_pmd(d)])
    dec = FrameDecoder("server", d)
    assert dec.feed(data[: len(data) // 2], 1, 1) == []
    (f,) = dec.finish()
    assert f.inflated and f.truncated and f.anomalies == ("incomplete-frame",)
    assert f.payload.startswith("认证失败 0123".encode()) and text.encode().startswith(f.payload)


def test_bfinal_messages_each_start_a_new_stream() -> None:
    """RFC 7692 §7.2.3.4 lets a sender end a message with a BFINAL block (Z_FINISH)."""
    data = b""
    for text in (b"first message", b"second message"):
        c = zlib.compressobj(wbits=-15)
        data += raw(Opcode.TEXT, c.compress(text) + c.flush(), rsv1=True)
    frames, _ = decode("server", data, Deflate())
    assert [(f.text, f.anomalies) for f in frames] == [("first message", ()), ("second message", ())]


def test_rsv1_on_control_and_continuation_frames() -> None:
    data = (
        raw(Opcode.PING, b"", rsv1=True)
        + raw(Opcode.BINARY, b"a", fin=False)
        + raw(Opcode.CONTINUATION, b"b", rsv1=True)
    )
    frames, _ = decode("server", data, Deflate())
    assert [f.anomalies for f in frames] == [("rsv1-on-control-frame",), (), ("rsv1-on-continuation",)]


# -- any split gives the same frames ---------------------------------------------------------


def _sequence(direction: str) -> tuple[bytes, Deflate]:
    d = Deflate(server_max_window_bits=12, client_max_window_bits=12)
    is_client = direction == "client"
    pmd = server_pmd(d, client=is_client)
    frames = [
        Frame(WsOp.TEXT, "认证失败".encode()),
        Frame(WsOp.PING, b"ping"),
        Frame(WsOp.BINARY, bytes(range(200)) * 2, fin=False),
        Frame(WsOp.CONT, b"tail"),
        Frame(WsOp.TEXT, b'{"type":"hello"}' * 30),
        Frame(WsOp.CLOSE, struct.pack("!H", 1000) + b"bye"),
    ]
    data = b"".join(f.serialize(mask=is_client, extensions=[pmd]) for f in frames)
    return data, d


@pytest.mark.parametrize("direction", ["server", "client"])
def test_every_single_split_offset(direction: str) -> None:
    data, d = _sequence(direction)
    whole, _ = decode(direction, data, d)
    assert len(whole) == 6 and whole[-1].close_reason == "bye"
    for cut in range(1, len(data)):
        split, _ = decode(direction, data, d, chunks=[cut])
        assert strip_time(split) == strip_time(whole), cut


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["server", "client"]), st.data())
def test_any_split_gives_same_frames(direction: str, data: st.DataObject) -> None:
    stream, d = _sequence(direction)
    cuts = sorted(data.draw(st.sets(st.integers(1, len(stream) - 1), max_size=40)))
    whole, _ = decode(direction, stream, d)
    split, _ = decode(direction, stream, d, chunks=cuts)
    assert strip_time(split) == strip_time(whole)


def test_byte_by_byte_keeps_completion_timestamps() -> None:
    data = Frame(WsOp.TEXT, b"abc").serialize(mask=False)
    frames, _ = decode("server", data, chunks=list(range(1, len(data))))
    assert frames[0].ts_ns == 1000 + len(data) - 1 and frames[0].frame == 10 + len(data) - 1


# -- a real capture --------------------------------------------------------------------------

# suricata-verify websocket-compressed-example_websocket.pcap: the server's TCP payloads after
# its 101 (`tshark -q -z follow,tcp,raw,0`), one segment a line; texts as tshark decodes them.
SURICATA_101_EXT = "permessage-deflate; client_max_window_bits=15"
SURICATA_SERVER_SEGMENTS = [
    "c126f2768db435304f4eb23435b54c4d4b33324c354e353649334e4a4a31b4303231484a4c360600",
    "c1170af17777f771b5354ab1304832324a4d49324e4c4b0600",
    "c112820a9a981a18249aa7a5259958585a980200",
    "c112820a9a9ba59898a65aa4a6a4261a1ba40100",
    "c114820a1a1a585858981958a418a558a6a518980100",
    "c11382099b1a599818a65a98182727a5a61a9a0200",
    "c114820a5b9aa6249b19a625a5181ba79a1a19250100",
    "c114820a1b18a426272725199a265b98981858a60000",
    "c10f820a271b0325cc12cd9393d34c0000",
    "c114820a999a995a1a1a1b9a9919a5999a181b9b0000",
]
SURICATA_TEXTS = [
    "KEY=07cb9559eff21e3e34f3bbd18240bac3",
    "TOGGLE=2d80b22edb3afc",
    "TOGGLE=4500a7ffb48985",
    "TOGGLE=76d45e8edea30f",
    "TOGGLE=10888608d2d9fd06",
    "TOGGLE=152841e843cbee15",
    "TOGGLE=95dc61fbd33e522b",
    "TOGGLE=00eccbb15c84409d",
    "TOGGLE=c300e6a7ccf4",
    "TOGGLE=5659131662f54334",
]


def test_real_capture_inflates_to_text() -> None:
    d = negotiated_deflate([SURICATA_101_EXT])
    assert d == Deflate()
    dec = FrameDecoder("server", d, Limits(max_frames=64))
    frames: list[WsFrame] = []
    for i, seg in enumerate(SURICATA_SERVER_SEGMENTS):
        frames += dec.feed(bytes.fromhex(seg), i, 8 + 2 * i)
    assert [f.text for f in frames] == SURICATA_TEXTS
    assert all(f.rsv1 and f.inflated and f.anomalies == () for f in frames)
    assert [f.frame for f in frames] == list(range(8, 28, 2))  # the capture's frame numbers


def test_real_capture_needs_context_takeover() -> None:
    """The captured server relies on context takeover: from the third message on, inflating a
    message alone fails, so the test above really exercises takeover."""
    for seg in SURICATA_SERVER_SEGMENTS[2:]:
        payload = bytes.fromhex(seg)[2:]
        with pytest.raises(zlib.error):
            zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


# -- hostile input never raises and stays within the limits ----------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["server", "client"]),
    st.binary(max_size=3000),
    st.lists(st.integers(0, 3000), max_size=6),
    st.lists(st.tuples(st.integers(0, 2999), st.integers(0, 255)), max_size=8),
    st.booleans(),
)
def test_garbage_and_mutations_stay_bounded(
    direction: str, junk: bytes, cuts: list[int], flips: list[tuple[int, int]], mutate: bool
) -> None:
    limits = Limits(max_frames=8, max_frame_payload=64, max_inflate_bytes=1024)
    if mutate:
        stream, d = _sequence(direction)
        buf = bytearray(stream)
        for at, value in flips:
            buf[at % len(buf)] = value
        data = bytes(buf)
    else:
        data, d = junk, Deflate()
    frames, dec = decode(direction, data, d, limits, sorted({c for c in cuts if 0 < c < len(data)}))
    frames += dec.finish()
    assert len(frames) <= limits.max_frames
    for f in frames:
        assert len(f.payload) <= limits.max_frame_payload
        assert f.truncated or f.inflated or len(f.payload) == f.length or "inflate-failed" in f.anomalies


# -- recognising frames mid-session ------------------------------------------------------------


def _serialized(opcode: WsOp, payload: bytes, masked: bool) -> bytes:
    return Frame(opcode, payload).serialize(mask=masked, extensions=None)


@pytest.mark.parametrize("masked", [True, False])
def test_frame_runs_made_by_websockets_are_recognised(masked: bool) -> None:
    from analyzer.wsframes import is_frame_run

    sizes = (0, 1, 125, 126, 65535, 65536)  # every length form at its edges
    run = b"".join(_serialized(WsOp.BINARY, bytes(n), masked) for n in sizes)
    run += _serialized(WsOp.PING, b"p", masked) + _serialized(WsOp.TEXT, b"{}", masked)
    assert is_frame_run(run, masked)
    assert not is_frame_run(run, not masked)  # a client's frames are masked, a server's are not
    assert not is_frame_run(run[:-1], masked) and not is_frame_run(run + b"\x82", masked)
    assert not is_frame_run(b"", masked)


def test_http_and_random_bytes_are_not_frame_runs() -> None:
    import random

    from analyzer.wsframes import is_frame_run

    assert not is_frame_run(b"GET /xiaozhi/v1/ HTTP/1.1\r\nHost: x\r\n\r\n", True)
    assert not is_frame_run(b"HTTP/1.1 101 Switching Protocols\r\n\r\n", False)
    rng = random.Random(7)
    pieces = [rng.randbytes(rng.randrange(1, 1461)) for _ in range(20_000)]
    hits = sum(is_frame_run(p, masked) for p in pieces for masked in (True, False))
    assert hits < 40  # < 0.1 %: two such pieces are needed before a direction stops being searched


def test_frame_run_work_is_bounded() -> None:
    """A hostile mid-stream piece of thousands of tiny frames costs a bounded scan (and is not
    called a run), so a capture of them cannot make the search quadratic."""
    from analyzer.wsframes import MAX_RUN_FRAMES, is_frame_run

    tiny = _serialized(WsOp.BINARY, b"", False)
    assert is_frame_run(tiny * MAX_RUN_FRAMES, False)
    assert not is_frame_run(tiny * 30_000, False)
