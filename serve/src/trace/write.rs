//! Writing traces: a framed, checksummed writer with a size cap, and the recorder thread the
//! bridge threads feed through a bounded queue.

use super::{
    frame_head, io_err, is_zstd, TraceError, FLUSH_EVERY, FRAME_HEAD, RECORDER_QUEUE, TRACE_MAGIC,
};
use malcolm_proto::bridge::{Direction, TraceHeader, TraceRecord};
use prost::Message;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

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
