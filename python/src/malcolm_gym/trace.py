"""Reading trace files written by ``agent-server serve --record`` (``proto/malcolm/bridge/v1/
trace.proto``). Format 2 (magic ``MSTRACE2``): frames of a 12-byte head (marker ``MSFR``,
payload length and CRC-32, little-endian) and a payload, the first a ``TraceHeader``, every
later one a ``TraceRecord`` whose ``envelope`` holds the message's bytes as they crossed the
wire. A damaged frame or an envelope that does not decode is skipped (with a warning) and
reading goes on at the next frame that checks out, as agent-server reads it. Format 1 (magic
``MSTRACE1``: varint-length-delimited messages, no checksums) is still read. A ``.zst`` file
is the same stream compressed with zstd (read when the ``zstandard`` module is installed). A
truncated file is read up to its last whole record."""

from __future__ import annotations

import io
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from malcolm.bridge.v1 import bridge_pb2, trace_pb2

MAGIC = b"MSTRACE2"
MAGIC_V1 = b"MSTRACE1"
FRAME_MARKER = b"MSFR"
FRAME_HEAD = 12
# Largest record a reader accepts (as agent-server): a corrupt length must not allocate gigabytes.
MAX_RECORD_BYTES = 64 << 20
_CHUNK = 1 << 20


class TraceError(Exception):
    pass


@dataclass
class Record:
    """One recorded message: ``envelope`` decoded, ``raw`` the bytes as they crossed the wire."""

    session_id: int
    t_ns: int
    direction: int
    envelope: bridge_pb2.Envelope
    raw: bytes
    decide_ns: int


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


class _Frames:
    """The frames of a format-2 stream, re-synchronising on the next marker after damage."""

    def __init__(self, f: io.BufferedIOBase):
        self.f = f
        self.buf = bytearray()
        self.pos = 0
        self.eof = False
        self.damaged = 0

    def _fill(self, n: int) -> bool:
        """At least ``n`` bytes from ``pos`` in the buffer (False at end of file)."""
        while len(self.buf) - self.pos < n and not self.eof:
            if self.pos > _CHUNK:
                del self.buf[: self.pos]
                self.pos = 0
            chunk = self.f.read(max(_CHUNK, n))
            if not chunk:
                self.eof = True
            self.buf.extend(chunk)
        return len(self.buf) - self.pos >= n

    def _skip_to_marker(self) -> None:
        """Past the damaged frame at ``pos`` to the next marker (or the end of the file)."""
        self.damaged += 1
        self.pos += 1
        while True:
            i = self.buf.find(FRAME_MARKER, self.pos)
            if i >= 0:
                self.pos = i
                return
            # Keep the last bytes: a marker may straddle two reads.
            self.pos = max(self.pos, len(self.buf) - (len(FRAME_MARKER) - 1))
            if self.eof:
                self.pos = len(self.buf)
                return
            self._fill(len(self.buf) - self.pos + 1)

    def next(self) -> "bytes | None":
        while self._fill(FRAME_HEAD):
            head = self.buf[self.pos : self.pos + FRAME_HEAD]
            n = int.from_bytes(head[4:8], "little")
            crc = int.from_bytes(head[8:12], "little")
            if head[:4] != FRAME_MARKER or n > MAX_RECORD_BYTES:
                self._skip_to_marker()
                continue
            if not self._fill(FRAME_HEAD + n):
                return None  # a truncated last frame
            payload = bytes(self.buf[self.pos + FRAME_HEAD : self.pos + FRAME_HEAD + n])
            if zlib.crc32(payload) != crc:
                self._skip_to_marker()
                continue
            self.pos += FRAME_HEAD + n
            return payload
        return None


def read_trace(path) -> "tuple[trace_pb2.TraceHeader, Iterator[Record]]":
    """The header and an iterator over the records of a trace file (format 2 or 1)."""
    path = Path(path)
    f = _open(path)
    magic = f.read(len(MAGIC))
    if magic not in (MAGIC, MAGIC_V1):
        f.close()
        raise TraceError(f"{path} is not a bridge trace (no {MAGIC!r} or {MAGIC_V1!r} magic)")
    header = trace_pb2.TraceHeader()
    if magic == MAGIC:
        frames = _Frames(f)
        data = frames.next()
        if data is None or frames.damaged:
            f.close()
            raise TraceError(f"{path}: its header frame is damaged or truncated")
        header.ParseFromString(data)
        next_payload = frames.next
    else:
        n = _varint(f)
        data = f.read(n) if n is not None else b""
        if n is None or len(data) != n:
            f.close()
            raise TraceError(f"{path}: truncated before the end of its header")
        header.ParseFromString(data)
        frames = None

        def next_payload() -> "bytes | None":
            n = _varint(f)
            if n is None:
                return None
            data = f.read(n)
            return data if len(data) == n else None  # a truncated last record

    def records() -> Iterator[Record]:
        skipped = 0
        with f:
            while True:
                data = next_payload()
                if data is None:
                    break
                r = trace_pb2.TraceRecord()
                env = bridge_pb2.Envelope()
                try:
                    r.ParseFromString(data)
                    # Format 1 nested the Envelope as a message: the same bytes on the wire.
                    raw = r.envelope
                    env.ParseFromString(raw)
                except Exception:  # protobuf's DecodeError: a garbage message was recorded
                    skipped += 1
                    continue
                yield Record(r.session_id, r.t_ns, r.direction, env, raw, r.decide_ns)
        damaged = skipped + (frames.damaged if frames else 0)
        if damaged:
            warnings.warn(f"{path}: {damaged} damaged or undecodable record(s) skipped", stacklevel=2)

    return header, records()
