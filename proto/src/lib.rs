//! # Layout
//!
//! The contract between the environments (OMNeT++ or the embedded rack simulator) and the
//! agent server. [`bridge`] holds the generated protobuf types of the ZeroMQ data path and
//! of trace files (`proto/malcolm/bridge/v1/*.proto`), [`control`] the gRPC control-plane
//! service (`proto/malcolm/control/v1/control.proto`). [`codec`] decodes envelopes with the
//! checks every receiver needs (size, version, body). [`sth`] and [`heartbeat`] are the
//! framework-free shared formats of design.md section 4, mirrored by the C++ core and checked
//! against the golden vectors in `proto/testdata/` ([`testdata_dir`]).

pub mod codec;
pub mod heartbeat;
pub mod sth;

/// Bridge protocol v1 and trace files (`malcolm.bridge.v1`).
pub mod bridge {
    tonic::include_proto!("malcolm.bridge.v1");
}

/// Control plane (`malcolm.control.v1`).
pub mod control {
    tonic::include_proto!("malcolm.control.v1");
}

pub use bridge::Envelope;
pub use codec::{decode_envelope, envelope, error_envelope, DecodeError, PROTOCOL_VERSION};
pub use heartbeat::{Heartbeat, HeartbeatError, HEARTBEAT_LEN};
pub use sth::{bucket_of, SlackHistogram, STH_BUCKETS};

/// Encoded `FileDescriptorSet` of all the protos, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("malcolm_descriptor");

/// The folder of shared golden vectors (`proto/testdata`), for tests of any crate.
pub fn testdata_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

/// The STH configuration this crate implements, as announced in `Hello`.
pub fn sth_config() -> bridge::SthConfig {
    bridge::SthConfig {
        buckets: STH_BUCKETS as u32,
        fine_width_us: sth::STH_FINE_WIDTH_US as u32,
        critical_us: sth::STH_CRITICAL_US as u32,
    }
}
