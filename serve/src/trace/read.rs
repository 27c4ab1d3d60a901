//! Reading traces: both formats, frame by frame, re-scanning for the next marker after a
//! damaged frame so one bad record is reported and skipped.

use super::{
    io_err, is_zstd, TraceError, FRAME_HEAD, FRAME_MARKER, MAX_RECORD_BYTES, TRACE_MAGIC,
    TRACE_MAGIC_V1,
};
use malcolm_proto::bridge::{TraceHeader, TraceRecord};
use prost::Message;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// A read-ahead window over the (decompressed) stream, so a damaged frame can be re-scanned
/// byte by byte for the next marker.
struct Window {
    input: Box<dyn Read>,
    buf: Vec<u8>,
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    eof: bool,
}

impl Window {
    /// Makes at least `n` bytes available from `pos` (fewer only at the end of the stream);
    /// returns how many are.
    fn ensure(&mut self, n: usize) -> std::io::Result<usize> {
        while self.buf.len() - self.pos < n && !self.eof {
            if self.pos > (1 << 20) && self.pos * 2 > self.buf.len() {
                self.buf.drain(..self.pos);
                self.base += self.pos as u64;
                self.pos = 0;
            }
            let want = (n - (self.buf.len() - self.pos)).max(64 << 10);
            let old = self.buf.len();
            self.buf.resize(old + want, 0);
            let got = loop {
                match self.input.read(&mut self.buf[old..]) {
                    Ok(k) => break k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(old + got);
            if got == 0 {
                self.eof = true;
            }
        }
        Ok(self.buf.len() - self.pos)
    }

    fn avail(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }
}

/// Why a frame could not be read when the stream ends inside it.
const TORN: &str = "the file ends inside this frame";

/// One step of reading frames.
enum Frame {
    Payload(Vec<u8>),
    Damaged {
        offset: u64,
        skipped: u64,
        reason: String,
    },
    Truncated {
        offset: u64,
    },
    End,
}

/// Reads a trace file record by record.
pub struct TraceReader {
    win: Window,
    format: u8,
    records: u64,
    damaged: u64,
    header: TraceHeader,
    done: bool,
}

impl TraceReader {
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let file = File::open(path).map_err(io_err(path))?;
        let input: Box<dyn Read> = if is_zstd(path) {
            Box::new(zstd::Decoder::new(file).map_err(io_err(path))?)
        } else {
            Box::new(file)
        };
        Self::from_reader(input).map_err(|e| match e {
            TraceError::Io { source, .. } => io_err(path)(source),
            other => other,
        })
    }

    pub fn from_reader(input: Box<dyn Read>) -> Result<Self, TraceError> {
        let mut r = Self {
            win: Window {
                input,
                buf: Vec::new(),
                pos: 0,
                base: 0,
                eof: false,
            },
            format: 0,
            records: 0,
            damaged: 0,
            header: TraceHeader::default(),
            done: false,
        };
        let io = |source| TraceError::Io {
            path: PathBuf::from("<trace>"),
            source,
        };
        if r.win.ensure(8).map_err(io)? < 8 {
            return Err(TraceError::BadMagic);
        }
        r.format = match &r.win.avail()[..8] {
            m if m == TRACE_MAGIC => 2,
            m if m == TRACE_MAGIC_V1 => 1,
            _ => return Err(TraceError::BadMagic),
        };
        r.win.consume(8);
        let bytes = match r.format {
            2 => match r.next_frame().map_err(io)? {
                Frame::Payload(b) => b,
                Frame::Damaged { reason, .. } => return Err(TraceError::BadHeader { reason }),
                Frame::Truncated { .. } | Frame::End => {
                    return Err(TraceError::BadHeader {
                        reason: "the file ends inside it".into(),
                    })
                }
            },
            _ => match r.next_frame_v1()? {
                Some(b) => b,
                None => {
                    return Err(TraceError::BadHeader {
                        reason: "the file ends inside it".into(),
                    })
                }
            },
        };
        r.header = TraceHeader::decode(&bytes[..]).map_err(|e| TraceError::BadHeader {
            reason: e.to_string(),
        })?;
        Ok(r)
    }

    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// 1 or 2 (see the module docs).
    pub fn format(&self) -> u8 {
        self.format
    }

    /// Bytes of the (decompressed) stream consumed so far.
    pub fn offset(&self) -> u64 {
        self.win.offset()
    }

    /// Damaged stretches skipped so far.
    pub fn damaged(&self) -> u64 {
        self.damaged
    }

    /// The next frame of format 2, re-synchronising on the next marker after damage.
    fn next_frame(&mut self) -> std::io::Result<Frame> {
        let start = self.win.offset();
        let avail = self.win.ensure(FRAME_HEAD)?;
        if avail == 0 {
            return Ok(Frame::End);
        }
        if avail < FRAME_HEAD {
            self.win.consume(avail);
            return Ok(Frame::Truncated { offset: start });
        }
        let head = &self.win.avail()[..FRAME_HEAD];
        let reason = if &head[..4] != FRAME_MARKER {
            "no frame marker".to_string()
        } else {
            let len = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as u64;
            let crc = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
            if len > MAX_RECORD_BYTES {
                format!("frame length {len} exceeds {MAX_RECORD_BYTES}")
            } else {
                let total = FRAME_HEAD + len as usize;
                let avail = self.win.ensure(total)?;
                if avail < total {
                    // Maybe a torn last write, maybe a damaged length: look for a later frame.
                    match self.resync(start, TORN)? {
                        Frame::End => {
                            return Ok(Frame::Truncated { offset: start });
                        }
                        other => return Ok(other),
                    }
                }
                let payload = &self.win.avail()[FRAME_HEAD..total];
                if crc32fast::hash(payload) == crc {
                    let p = payload.to_vec();
                    self.win.consume(total);
                    return Ok(Frame::Payload(p));
                }
                "checksum mismatch".to_string()
            }
        };
        self.resync(start, &reason)
    }

    /// Skips from `start` to the next frame marker; the skipped stretch is one damage.
    fn resync(&mut self, start: u64, reason: &str) -> std::io::Result<Frame> {
        self.win.consume(1);
        loop {
            let avail = self.win.ensure(FRAME_MARKER.len())?;
            if avail < FRAME_MARKER.len() {
                self.win.consume(avail);
                if reason == TORN {
                    return Ok(Frame::End);
                }
                self.damaged += 1;
                return Ok(Frame::Damaged {
                    offset: start,
                    skipped: self.win.offset() - start,
                    reason: reason.to_string(),
                });
            }
            let window = self.win.avail();
            match window.windows(4).position(|w| w == FRAME_MARKER) {
                Some(k) => {
                    self.win.consume(k);
                    self.damaged += 1;
                    return Ok(Frame::Damaged {
                        offset: start,
                        skipped: self.win.offset() - start,
                        reason: reason.to_string(),
                    });
                }
                None => {
                    // Keep the last 3 bytes: a marker may straddle the refill.
                    let keep = FRAME_MARKER.len() - 1;
                    let k = window.len() - keep;
                    self.win.consume(k);
                    if self.win.ensure(keep + 1)? <= keep {
                        let rest = self.win.avail().len();
                        self.win.consume(rest);
                    }
                }
            }
        }
    }

    /// A varint-prefixed frame of format 1; `None` at a clean end of file.
    fn next_frame_v1(&mut self) -> Result<Option<Vec<u8>>, TraceError> {
        let start = self.win.offset();
        let corrupt = |reason: String, records| TraceError::Corrupt {
            offset: start,
            records,
            reason,
        };
        let mut len: u64 = 0;
        let mut shift = 0;
        loop {
            let avail = self
                .win
                .ensure(1)
                .map_err(|e| corrupt(e.to_string(), self.records))?;
            if avail == 0 {
                return if shift == 0 {
                    Ok(None)
                } else {
                    Err(TraceError::Truncated {
                        offset: start,
                        records: self.records,
                    })
                };
            }
            let b = self.win.avail()[0];
            self.win.consume(1);
            len |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(corrupt(
                    "length prefix is not a varint".into(),
                    self.records,
                ));
            }
        }
        if len > MAX_RECORD_BYTES {
            return Err(corrupt(
                format!("record length {len} exceeds {MAX_RECORD_BYTES}"),
                self.records,
            ));
        }
        let got = self
            .win
            .ensure(len as usize)
            .map_err(|e| corrupt(e.to_string(), self.records))?;
        if got < len as usize {
            return Err(TraceError::Truncated {
                offset: start,
                records: self.records,
            });
        }
        let b = self.win.avail()[..len as usize].to_vec();
        self.win.consume(len as usize);
        Ok(Some(b))
    }

    /// The next record, `None` at the end. A damaged record of format 2 comes back as
    /// [`TraceError::Damaged`] and reading goes on; any other error ends the reader.
    pub fn next_record(&mut self) -> Option<Result<TraceRecord, TraceError>> {
        if self.done {
            return None;
        }
        let start = self.win.offset();
        let result = if self.format == 2 {
            match self.next_frame() {
                Ok(Frame::End) => {
                    self.done = true;
                    return None;
                }
                Ok(Frame::Payload(b)) => {
                    TraceRecord::decode(&b[..]).map_err(|e| TraceError::Damaged {
                        offset: start,
                        skipped: b.len() as u64,
                        reason: format!("record does not decode: {e}"),
                    })
                }
                Ok(Frame::Damaged {
                    offset,
                    skipped,
                    reason,
                }) => Err(TraceError::Damaged {
                    offset,
                    skipped,
                    reason,
                }),
                Ok(Frame::Truncated { offset }) => Err(TraceError::Truncated {
                    offset,
                    records: self.records,
                }),
                Err(e) => Err(TraceError::Corrupt {
                    offset: start,
                    records: self.records,
                    reason: e.to_string(),
                }),
            }
        } else {
            match self.next_frame_v1() {
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Ok(Some(b)) => TraceRecord::decode(&b[..]).map_err(|e| TraceError::Corrupt {
                    offset: start,
                    records: self.records,
                    reason: e.to_string(),
                }),
                Err(e) => Err(e),
            }
        };
        match &result {
            Ok(_) => self.records += 1,
            Err(e) if e.is_skipped() => {}
            Err(_) => self.done = true,
        }
        Some(result)
    }
}

impl Iterator for TraceReader {
    type Item = Result<TraceRecord, TraceError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record()
    }
}
