"""Reading trace files written by ``agent-server serve --record`` (``proto/malcolm/bridge/v1/
trace.proto``): the 8 magic bytes ``MSTRACE1``, then varint-length-delimited protobuf messages,
one ``TraceHeader`` and then ``TraceRecord``s. A ``.zst`` file is the same stream compressed
with zstd (read when the ``zstandard`` module is installed). A truncated file is read up to its
last whole record, as agent-server reads it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterator

from malcolm.bridge.v1 import trace_pb2

MAGIC = b"MSTRACE1"


class TraceError(Exception):
    pass


def _varint(buf: io.BufferedIOBase) -> "int | None":
    shift = result = 0
    while True:
        b = buf.read(1)
        if not b:
            return None  # end of file (or truncated inside a length prefix)
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result
        shift += 7
        if shift > 63:
            raise TraceError("length prefix longer than 10 bytes")


def _open(path: Path) -> io.BufferedIOBase:
    raw = open(path, "rb")
    if path.suffix != ".zst":
        return raw
    try:
        import zstandard
    except ImportError:
        raw.close()
        raise TraceError(f"{path} is zstd-compressed: pip install zstandard, or record without .zst") from None
    return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))


def read_trace(path) -> "tuple[trace_pb2.TraceHeader, Iterator[trace_pb2.TraceRecord]]":
    """The header and an iterator over the records of a trace file."""
    path = Path(path)
    f = _open(path)
    if f.read(len(MAGIC)) != MAGIC:
        f.close()
        raise TraceError(f"{path} is not a bridge trace (no {MAGIC!r} magic)")
    header = trace_pb2.TraceHeader()
    n = _varint(f)
    data = f.read(n) if n is not None else b""
    if n is None or len(data) != n:
        f.close()
        raise TraceError(f"{path}: truncated before the end of its header")
    header.ParseFromString(data)

    def records():
        with f:
            while True:
                n = _varint(f)
                if n is None:
                    return
                data = f.read(n)
                if len(data) != n:
                    return  # a truncated last record
                r = trace_pb2.TraceRecord()
                r.ParseFromString(data)
                yield r

    return header, records()
