"""Trace files as agent-server writes them (format 2: framed, CRC-32) read back in Python,
including a damaged frame and a garbage message in the stream, and format 1."""

import struct
import zlib

import pytest

from malcolm.bridge.v1 import bridge_pb2, trace_pb2
from malcolm_gym.trace import TraceError, read_trace


def frame(payload: bytes) -> bytes:
    return b"MSFR" + struct.pack("<II", len(payload), zlib.crc32(payload)) + payload


def record(i: int, raw: "bytes | None" = None) -> bytes:
    env = bridge_pb2.Envelope(protocol_version=1, request_id=i)
    env.placement.targets.extend([i % 5, 1])
    r = trace_pb2.TraceRecord(session_id=1, t_ns=i, direction=trace_pb2.DIRECTION_AGENT_TO_ENV,
                              envelope=env.SerializeToString() if raw is None else raw)
    return r.SerializeToString()


def header() -> bytes:
    return trace_pb2.TraceHeader(protocol_version=2, policy="po2").SerializeToString()


def test_format_2_reads_and_skips_a_flipped_bit_and_a_garbage_message(tmp_path):
    bad = bytearray(frame(record(2)))
    bad[20] ^= 0x10  # a bit flip inside the payload: the checksum catches it
    data = (b"MSTRACE2" + frame(header()) + frame(record(1)) + bytes(bad)
            + frame(record(3, raw=b"\xff\xff\xff")) + frame(record(4)) + frame(record(5))[:-3])
    path = tmp_path / "t.trace"
    path.write_bytes(data)
    h, records = read_trace(path)
    assert h.policy == "po2"
    with pytest.warns(UserWarning, match="2 damaged"):
        got = [(r.envelope.request_id, list(r.envelope.placement.targets)) for r in records]
    # Record 2 (checksum), 3 (undecodable envelope) skipped; 5 torn at the end.
    assert got == [(1, [1, 1]), (4, [4, 1])]


def test_format_1_is_still_read(tmp_path):
    def delimited(b: bytes) -> bytes:
        n, out = len(b), bytearray()
        while n >= 0x80:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out) + b

    path = tmp_path / "old.trace"
    path.write_bytes(b"MSTRACE1" + delimited(header()) + delimited(record(7)) + delimited(record(8)))
    _, records = read_trace(path)
    assert [r.envelope.request_id for r in records] == [7, 8]


def test_a_damaged_header_frame_is_an_error(tmp_path):
    bad = bytearray(frame(header()))
    bad[-1] ^= 1
    path = tmp_path / "bad.trace"
    path.write_bytes(b"MSTRACE2" + bytes(bad) + frame(record(1)))
    with pytest.raises(TraceError, match="header"):
        read_trace(path)
