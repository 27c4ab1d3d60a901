//! Trace files: record every message of a run, read them back. Format 2 frames each record
//! with a marker, its length and a CRC-32, so a damaged record (a bit flip, a garbage message,
//! a torn write) is reported and skipped and the rest stays readable; format 1 files (no
//! checksums) are still read.
//!
//! Layout (see `proto/malcolm/bridge/v1/trace.proto`): magic `MSTRACE2`, a frame holding the
//! `TraceHeader`, then one frame per `TraceRecord`; `.zst` files are zstd streams of it.

use malcolm_proto::bridge::{Direction, TraceHeader, TraceRecord};
use prost::Message;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// Magic of the current format (framed, checksummed records).
pub const TRACE_MAGIC: &[u8; 8] = b"MSTRACE2";
/// Magic of format 1 (varint-delimited records, no checksums), still read.
pub const TRACE_MAGIC_V1: &[u8; 8] = b"MSTRACE1";
/// The 4 bytes that open every frame of format 2.
pub const FRAME_MARKER: &[u8; 4] = b"MSFR";
/// Marker, length and CRC-32.
pub const FRAME_HEAD: usize = 12;
/// Largest record the reader accepts: a corrupt length must not allocate gigabytes.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;
/// What `serve --record` writes at most before it stops recording (with a warning): enough
/// for hours of a few envs, far from filling a disk by accident.
pub const DEFAULT_RECORD_MAX_BYTES: u64 = 4 << 30;
/// Records between flushes: a killed recorder loses at most this many records.
const FLUSH_EVERY: u64 = 256;
/// Events buffered between the bridge threads and the writer thread; when the disk is slower
/// than the bridge, the bridge waits instead of dropping records.
const RECORDER_QUEUE: usize = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a trace file (no MSTRACE1/MSTRACE2 magic at offset 0)")]
    BadMagic,
    #[error("the trace header at byte offset 8 is damaged: {reason}")]
    BadHeader { reason: String },
    #[error("trace truncated at byte offset {offset} (inside a record); the {records} records before it are valid")]
    Truncated { offset: u64, records: u64 },
    /// Format 1 only: a corrupt record ends the readable part.
    #[error("corrupt record at byte offset {offset}: {reason}; the {records} records before it are valid")]
    Corrupt {
        offset: u64,
        records: u64,
        reason: String,
    },
    /// Format 2: a damaged stretch, skipped; reading goes on after it.
    #[error("damaged record at byte offset {offset} ({skipped} bytes skipped): {reason}")]
    Damaged {
        offset: u64,
        skipped: u64,
        reason: String,
    },
}

impl TraceError {
    /// Whether reading can go on after this error (a skipped damaged record).
    pub fn is_skipped(&self) -> bool {
        matches!(self, TraceError::Damaged { .. })
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TraceError + '_ {
    move |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn is_zstd(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "zst")
}

/// The head of a frame around `payload`.
fn frame_head(payload_len: usize, crc: u32) -> [u8; FRAME_HEAD] {
    let mut h = [0u8; FRAME_HEAD];
    h[..4].copy_from_slice(FRAME_MARKER);
    h[4..8].copy_from_slice(&(payload_len as u32).to_le_bytes());
    h[8..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Appends records to a trace file.
pub struct TraceWriter {
    path: PathBuf,
    out: Box<dyn Write + Send>,
    records: u64,
    /// Bytes of frames written (before compression).
    bytes: u64,
    max_bytes: u64,
    dropped: u64,
    buf: Vec<u8>,
}

/// What a finished recording holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TraceStats {
    pub records: u64,
    pub bytes: u64,
    /// Records not written because the size limit was reached.
    pub dropped: u64,
}

impl TraceWriter {
    /// A new trace at `path` with `header`; records stop (counted as dropped) once the file
    /// holds `max_bytes` (0: no limit).
    pub fn create(path: &Path, header: &TraceHeader, max_bytes: u64) -> Result<Self, TraceError> {
        let file = File::create(path).map_err(io_err(path))?;
        let mut out: Box<dyn Write + Send> = if is_zstd(path) {
            Box::new(
                zstd::Encoder::new(BufWriter::new(file), 3)
                    .map_err(io_err(path))?
                    .auto_finish(),
            )
        } else {
            Box::new(BufWriter::new(file))
        };
        out.write_all(TRACE_MAGIC).map_err(io_err(path))?;
        let h = header.encode_to_vec();
        out.write_all(&frame_head(h.len(), crc32fast::hash(&h)))
            .map_err(io_err(path))?;
        out.write_all(&h).map_err(io_err(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            out,
            records: 0,
            bytes: (TRACE_MAGIC.len() + FRAME_HEAD + h.len()) as u64,
            max_bytes: if max_bytes == 0 { u64::MAX } else { max_bytes },
            dropped: 0,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Writes one record whose message is given as the bytes that went over the wire (no
    /// decode/re-encode on the hot path, and a garbage message is recorded as it was).
    /// `Ok(false)` when the size limit dropped it.
    pub fn write_raw(
        &mut self,
        session_id: u64,
        t_ns: u64,
        direction: Direction,
        envelope_bytes: &[u8],
        decide_ns: u64,
    ) -> Result<bool, TraceError> {
        let head = TraceRecord {
            session_id,
            t_ns,
            direction: direction as i32,
            envelope: Vec::new(),
            decide_ns,
        };
        // Field 4 (`envelope`, bytes), appended after the scalar fields: protobuf accepts
        // fields in any order, so this equals encoding the record with the bytes inside.
        let env_len = envelope_bytes.len();
        self.buf.clear();
        self.buf.extend_from_slice(&[0; FRAME_HEAD]);
        head.encode(&mut self.buf).expect("vec has capacity");
        self.buf.push((4 << 3) | 2);
        prost::encoding::encode_varint(env_len as u64, &mut self.buf);
        self.buf.extend_from_slice(envelope_bytes);
        let payload_len = self.buf.len() - FRAME_HEAD;
        if self.bytes + self.buf.len() as u64 > self.max_bytes {
            if self.dropped == 0 {
                tracing::warn!(
                    path = %self.path.display(),
                    limit_bytes = self.max_bytes,
                    records = self.records,
                    "trace reached its size limit: recording stops (the run goes on)"
                );
            }
            self.dropped += 1;
            return Ok(false);
        }
        let crc = crc32fast::hash(&self.buf[FRAME_HEAD..]);
        self.buf[..FRAME_HEAD].copy_from_slice(&frame_head(payload_len, crc));
        self.out.write_all(&self.buf).map_err(io_err(&self.path))?;
        self.bytes += self.buf.len() as u64;
        self.records += 1;
        if self.records.is_multiple_of(FLUSH_EVERY) {
            self.out.flush().map_err(io_err(&self.path))?;
        }
        Ok(true)
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn finish(mut self) -> Result<TraceStats, TraceError> {
        self.out.flush().map_err(io_err(&self.path))?;
        Ok(TraceStats {
            records: self.records,
            bytes: self.bytes,
            dropped: self.dropped,
        })
    }
}

/// One event for the recorder thread.
pub struct TraceEvent {
    pub session_id: u64,
    pub t_ns: u64,
    pub direction: Direction,
    pub bytes: Vec<u8>,
    pub decide_ns: u64,
}

/// A writer on its own thread, fed by the bridge threads.
pub struct TraceRecorder {
    tx: mpsc::SyncSender<TraceEvent>,
    handle: JoinHandle<Result<TraceStats, TraceError>>,
    started: std::time::Instant,
    full: Arc<AtomicBool>,
}

/// The handle the bridge threads record with.
#[derive(Clone)]
pub struct TraceSink {
    tx: mpsc::SyncSender<TraceEvent>,
    started: std::time::Instant,
    /// Set once the size limit is reached: the bridge stops copying messages for it.
    full: Arc<AtomicBool>,
}

impl TraceSink {
    pub fn record(&self, session_id: u64, direction: Direction, bytes: &[u8], decide_ns: u64) {
        if self.full.load(Ordering::Relaxed) {
            return;
        }
        let ev = TraceEvent {
            session_id,
            t_ns: self.started.elapsed().as_nanos() as u64,
            direction,
            bytes: bytes.to_vec(),
            decide_ns,
        };
        if self.tx.send(ev).is_err() {
            tracing::warn!("trace recorder has stopped; record lost");
        }
    }
}

impl TraceRecorder {
    /// Starts the writer thread on a new trace at `path` (`max_bytes`: see
    /// [`TraceWriter::create`]).
    pub fn spawn(path: &Path, header: TraceHeader, max_bytes: u64) -> Result<Self, TraceError> {
        let mut writer = TraceWriter::create(path, &header, max_bytes)?;
        let (tx, rx) = mpsc::sync_channel::<TraceEvent>(RECORDER_QUEUE);
        let full = Arc::new(AtomicBool::new(false));
        let flag = full.clone();
        let handle = std::thread::Builder::new()
            .name("trace-recorder".into())
            .spawn(move || {
                let mut dropped_after_full = 0u64;
                for ev in rx {
                    let written = writer.write_raw(
                        ev.session_id,
                        ev.t_ns,
                        ev.direction,
                        &ev.bytes,
                        ev.decide_ns,
                    )?;
                    if !written {
                        flag.store(true, Ordering::Relaxed);
                        dropped_after_full += 1;
                    }
                }
                let mut stats = writer.finish()?;
                stats.dropped = stats.dropped.max(dropped_after_full);
                Ok(stats)
            })
            .map_err(io_err(path))?;
        Ok(Self {
            tx,
            handle,
            started: std::time::Instant::now(),
            full,
        })
    }

    pub fn sink(&self) -> TraceSink {
        TraceSink {
            tx: self.tx.clone(),
            started: self.started,
            full: self.full.clone(),
        }
    }

    /// Waits for every queued record to be written (all sinks must be dropped first).
    pub fn finish(self) -> Result<TraceStats, TraceError> {
        drop(self.tx);
        self.handle.join().unwrap_or_else(|_| {
            Err(TraceError::Corrupt {
                offset: 0,
                records: 0,
                reason: "recorder thread panicked".into(),
            })
        })
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn write(records: &[&[u8]]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.trace");
        let mut w = TraceWriter::create(
            &p,
            &TraceHeader {
                policy: "p".into(),
                ..Default::default()
            },
            0,
        )
        .unwrap();
        for (i, r) in records.iter().enumerate() {
            assert!(w
                .write_raw(i as u64, 0, Direction::EnvToAgent, r, 0)
                .unwrap());
        }
        w.finish().unwrap();
        std::fs::read(&p).unwrap()
    }

    fn read(bytes: Vec<u8>) -> (Vec<Vec<u8>>, Vec<String>) {
        let r = TraceReader::from_reader(Box::new(std::io::Cursor::new(bytes))).unwrap();
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        for rec in r {
            match rec {
                Ok(rec) => ok.push(rec.envelope),
                Err(e) => bad.push(e.to_string()),
            }
        }
        (ok, bad)
    }

    #[test]
    fn a_flipped_bit_loses_one_record_and_the_rest_reads() {
        let recs: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 100 + i as usize]).collect();
        let refs: Vec<&[u8]> = recs.iter().map(|r| r.as_slice()).collect();
        let clean = write(&refs);
        assert_eq!(read(clean.clone()).0, recs);
        // Frame starts: the header's, then one per record.
        let frames: Vec<usize> = clean
            .windows(4)
            .enumerate()
            .filter(|(_, w)| w == FRAME_MARKER)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(frames.len(), 6);
        // A bit inside the third record's payload.
        let mut flipped = clean.clone();
        flipped[frames[3] + FRAME_HEAD + 40] ^= 0x10;
        let (ok, bad) = read(flipped);
        assert_eq!(
            ok,
            vec![
                recs[0].clone(),
                recs[1].clone(),
                recs[3].clone(),
                recs[4].clone()
            ]
        );
        assert_eq!(bad.len(), 1, "{bad:?}");
        assert!(bad[0].contains("checksum mismatch"), "{bad:?}");
        // Garbage inserted between records: skipped up to the next marker.
        let cut = frames[2];
        let mut spliced = clean[..cut].to_vec();
        spliced.extend_from_slice(&[0xAB; 77]);
        spliced.extend_from_slice(&clean[cut..]);
        let (ok, bad) = read(spliced);
        assert_eq!(ok, recs);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].contains("77 bytes skipped"), "{bad:?}");
        // A torn last record: the others stay, the end says truncated.
        let (ok, bad) = read(clean[..clean.len() - 10].to_vec());
        assert_eq!(ok.len(), 4);
        assert_eq!(bad.len(), 1);
        assert!(bad[0].contains("truncated"), "{bad:?}");
    }

    #[test]
    fn a_damaged_header_says_so() {
        let mut bytes = write(&[b"x"]);
        bytes[8 + FRAME_HEAD] ^= 1;
        let e = TraceReader::from_reader(Box::new(std::io::Cursor::new(bytes)))
            .err()
            .unwrap();
        assert!(matches!(e, TraceError::BadHeader { .. }), "{e}");
    }

    #[test]
    fn the_size_limit_stops_recording() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("cap.trace");
        let mut w = TraceWriter::create(&p, &TraceHeader::default(), 1_000).unwrap();
        let mut written = 0;
        for i in 0..20 {
            written += w
                .write_raw(i, 0, Direction::EnvToAgent, &[7; 100], 0)
                .unwrap() as u64;
        }
        let stats = w.finish().unwrap();
        assert_eq!((stats.records, stats.dropped), (written, 20 - written));
        assert!(stats.bytes <= 1_000 && written >= 7, "{stats:?}");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), stats.bytes);
    }
}
