//! # Layout
//!
//! The contract between the environments (OMNeT++ or the embedded rack simulator) and the
//! agent server. [`bridge`] holds the generated protobuf types of the ZeroMQ data path and
//! of trace files (`proto/malcolm/bridge/v1/*.proto`), [`control`] the gRPC control-plane
//! service (`proto/malcolm/control/v1/control.proto`). [`codec`] decodes envelopes with the
//! checks every receiver needs (size, version, body) and negotiates versions; [`columns`]
//! packs and expands protocol v2's node columns. [`sth`] and [`heartbeat`] are the
//! framework-free shared formats of design.md section 4, mirrored by the C++ core and checked
//! against the golden vectors in `proto/testdata/` ([`testdata_dir`]).

pub mod codec;
pub mod columns;
pub mod fastdecode;
pub mod heartbeat;
pub mod sth;

/// The generated code, in the protobuf packages' own nesting (the control plane refers to the
/// bridge's `Mode` as `super::super::bridge::v1::Mode`).
pub mod generated {
    pub mod malcolm {
        pub mod bridge {
            pub mod v1 {
                tonic::include_proto!("malcolm.bridge.v1");
            }
        }
        pub mod control {
            pub mod v1 {
                tonic::include_proto!("malcolm.control.v1");
            }
        }
    }
}

/// Bridge protocol (versions 1 and 2, package `malcolm.bridge.v1`) and trace files.
pub use generated::malcolm::bridge::v1 as bridge;
/// Control plane (`malcolm.control.v1`).
pub use generated::malcolm::control::v1 as control;

pub use bridge::Envelope;
pub use codec::{
    decode_envelope, envelope, envelope_v, error_envelope, error_envelope_v, DecodeError,
    PROTOCOL_V1, PROTOCOL_V2, PROTOCOL_VERSION, SUPPORTED_VERSIONS,
};
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
