//! Trace files: record every Step and Placement of a run, read them back (tolerating a
//! truncated or corrupt tail: the valid prefix stays usable).
//!
//! Layout (see `proto/malcolm/bridge/v1/trace.proto`): magic `MSTRACE1`, a length-delimited
//! `TraceHeader`, then length-delimited `TraceRecord`s; `.zst` files are zstd streams of it.

use malcolm_proto::bridge::{Direction, TraceHeader, TraceRecord};
use prost::Message;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

pub const TRACE_MAGIC: &[u8; 8] = b"MSTRACE1";
/// Largest record the reader accepts: a corrupt length prefix must not allocate gigabytes.
pub const MAX_RECORD_BYTES: u64 = 64 << 20;
/// Records between flushes: a killed recorder loses at most this many records.
const FLUSH_EVERY: u64 = 256;
/// Events buffered between the bridge workers and the writer thread; when the disk is slower
/// than the bridge, the workers wait instead of dropping records.
const RECORDER_QUEUE: usize = 16_384;

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a trace file (bad magic at offset 0)")]
    BadMagic,
    #[error("trace truncated at byte offset {offset} (inside a record); the {records} records before it are valid")]
    Truncated { offset: u64, records: u64 },
    #[error("corrupt record at byte offset {offset}: {reason}; the {records} records before it are valid")]
    Corrupt {
        offset: u64,
        records: u64,
        reason: String,
    },
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

/// Appends records to a trace file.
pub struct TraceWriter {
    path: PathBuf,
    out: Box<dyn Write + Send>,
    records: u64,
    buf: Vec<u8>,
}

impl TraceWriter {
    pub fn create(path: &Path, header: &TraceHeader) -> Result<Self, TraceError> {
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
        out.write_all(&header.encode_length_delimited_to_vec())
            .map_err(io_err(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            out,
            records: 0,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Writes one record whose envelope is given as its encoded bytes (the bytes that went over
    /// the wire: no decode/re-encode on the hot path).
    pub fn write_raw(
        &mut self,
        session_id: u64,
        t_ns: u64,
        direction: Direction,
        envelope_bytes: &[u8],
        decide_ns: u64,
    ) -> Result<(), TraceError> {
        let head = TraceRecord {
            session_id,
            t_ns,
            direction: direction as i32,
            envelope: None,
            decide_ns,
        };
        // Field 4 (`envelope`), wire type 2: appended after the scalar fields. Protobuf
        // accepts fields in any order, so this equals encoding the record with the envelope.
        let env_len = envelope_bytes.len();
        let body_len =
            head.encoded_len() + 1 + prost::encoding::encoded_len_varint(env_len as u64) + env_len;
        self.buf.clear();
        prost::encoding::encode_varint(body_len as u64, &mut self.buf);
        head.encode(&mut self.buf).expect("vec has capacity");
        self.buf.push((4 << 3) | 2);
        prost::encoding::encode_varint(env_len as u64, &mut self.buf);
        self.buf.extend_from_slice(envelope_bytes);
        self.out.write_all(&self.buf).map_err(io_err(&self.path))?;
        self.records += 1;
        if self.records.is_multiple_of(FLUSH_EVERY) {
            self.out.flush().map_err(io_err(&self.path))?;
        }
        Ok(())
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    pub fn finish(mut self) -> Result<u64, TraceError> {
        self.out.flush().map_err(io_err(&self.path))?;
        Ok(self.records)
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

/// A writer on its own thread, fed by the bridge workers.
pub struct TraceRecorder {
    tx: mpsc::SyncSender<TraceEvent>,
    handle: JoinHandle<Result<u64, TraceError>>,
    started: std::time::Instant,
}

/// The handle workers use to record.
#[derive(Clone)]
pub struct TraceSink {
    tx: mpsc::SyncSender<TraceEvent>,
    started: std::time::Instant,
}

impl TraceSink {
    pub fn record(&self, session_id: u64, direction: Direction, bytes: &[u8], decide_ns: u64) {
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
    pub fn spawn(path: &Path, header: TraceHeader) -> Result<Self, TraceError> {
        let mut writer = TraceWriter::create(path, &header)?;
        let (tx, rx) = mpsc::sync_channel::<TraceEvent>(RECORDER_QUEUE);
        let handle = std::thread::Builder::new()
            .name("trace-recorder".into())
            .spawn(move || {
                for ev in rx {
                    writer.write_raw(
                        ev.session_id,
                        ev.t_ns,
                        ev.direction,
                        &ev.bytes,
                        ev.decide_ns,
                    )?;
                }
                writer.finish()
            })
            .map_err(io_err(path))?;
        Ok(Self {
            tx,
            handle,
            started: std::time::Instant::now(),
        })
    }

    pub fn sink(&self) -> TraceSink {
        TraceSink {
            tx: self.tx.clone(),
            started: self.started,
        }
    }

    /// Waits for every queued record to be written (all sinks must be dropped first).
    pub fn finish(self) -> Result<u64, TraceError> {
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

/// Reads a trace file record by record.
pub struct TraceReader {
    input: Box<dyn Read>,
    offset: u64,
    records: u64,
    header: TraceHeader,
    done: bool,
}

impl TraceReader {
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let file = File::open(path).map_err(io_err(path))?;
        let input: Box<dyn Read> = if is_zstd(path) {
            Box::new(zstd::Decoder::new(file).map_err(io_err(path))?)
        } else {
            Box::new(BufReader::new(file))
        };
        Self::from_reader(input)
    }

    pub fn from_reader(mut input: Box<dyn Read>) -> Result<Self, TraceError> {
        let mut magic = [0u8; 8];
        if read_full(&mut input, &mut magic).ok() != Some(8) || &magic != TRACE_MAGIC {
            return Err(TraceError::BadMagic);
        }
        let mut r = Self {
            input,
            offset: 8,
            records: 0,
            header: TraceHeader::default(),
            done: false,
        };
        let bytes = match r.next_frame()? {
            Some(b) => b,
            None => {
                return Err(TraceError::Truncated {
                    offset: 8,
                    records: 0,
                })
            }
        };
        r.header = TraceHeader::decode(&bytes[..]).map_err(|e| TraceError::Corrupt {
            offset: 8,
            records: 0,
            reason: format!("header: {e}"),
        })?;
        Ok(r)
    }

    pub fn header(&self) -> &TraceHeader {
        &self.header
    }

    /// Bytes of the (decompressed) stream consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Reads one varint-prefixed frame; `None` at a clean end of file.
    fn next_frame(&mut self) -> Result<Option<Vec<u8>>, TraceError> {
        let start = self.offset;
        let mut len: u64 = 0;
        let mut shift = 0;
        loop {
            let mut b = [0u8; 1];
            match read_full(&mut self.input, &mut b) {
                Ok(1) => {}
                Ok(_) if shift == 0 => return Ok(None),
                Ok(_) => {
                    return Err(TraceError::Truncated {
                        offset: start,
                        records: self.records,
                    })
                }
                Err(e) => {
                    return Err(TraceError::Corrupt {
                        offset: start,
                        records: self.records,
                        reason: e.to_string(),
                    })
                }
            }
            self.offset += 1;
            len |= ((b[0] & 0x7f) as u64) << shift;
            if b[0] & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 63 {
                return Err(TraceError::Corrupt {
                    offset: start,
                    records: self.records,
                    reason: "length prefix is not a varint".into(),
                });
            }
        }
        if len > MAX_RECORD_BYTES {
            return Err(TraceError::Corrupt {
                offset: start,
                records: self.records,
                reason: format!("record length {len} exceeds {MAX_RECORD_BYTES}"),
            });
        }
        let mut buf = vec![0u8; len as usize];
        let got = read_full(&mut self.input, &mut buf).map_err(|e| TraceError::Corrupt {
            offset: start,
            records: self.records,
            reason: e.to_string(),
        })?;
        if got < buf.len() {
            return Err(TraceError::Truncated {
                offset: start,
                records: self.records,
            });
        }
        self.offset += len;
        Ok(Some(buf))
    }

    /// The next record, `None` at the end; after an error the reader stays at its end.
    pub fn next_record(&mut self) -> Option<Result<TraceRecord, TraceError>> {
        if self.done {
            return None;
        }
        let start = self.offset;
        let result = match self.next_frame() {
            Ok(None) => {
                self.done = true;
                return None;
            }
            Ok(Some(bytes)) => TraceRecord::decode(&bytes[..]).map_err(|e| TraceError::Corrupt {
                offset: start,
                records: self.records,
                reason: e.to_string(),
            }),
            Err(e) => Err(e),
        };
        match &result {
            Ok(_) => self.records += 1,
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

/// Reads until `buf` is full or EOF; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
