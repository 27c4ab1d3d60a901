//! Trace files: record every message of a run, read them back. Format 2 frames each record
//! with a marker, its length and a CRC-32, so a damaged record (a bit flip, a garbage message,
//! a torn write) is reported and skipped and the rest stays readable; format 1 files (no
//! checksums) are still read.
//!
//! Layout (see `proto/malcolm/bridge/v1/trace.proto`): magic `MSTRACE2`, a frame holding the
//! `TraceHeader`, then one frame per `TraceRecord`; `.zst` files are zstd streams of it.
//!
//! Here: the format's constants and errors; `write` holds the writer and recorder thread,
//! `read` the reader.

use std::path::{Path, PathBuf};

mod read;
#[cfg(test)]
mod tests;
mod write;

pub use read::TraceReader;
pub use write::{TraceEvent, TraceRecorder, TraceSink, TraceStats, TraceWriter};

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
