//! Encoding and checked decoding of bridge envelopes: size limit, protocol version, body.

use crate::bridge::{envelope::Body, Envelope, Error as ErrorMsg, ErrorCode};
use prost::Message;

/// Version of the bridge protocol this crate speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest envelope accepted by default: a 256-node Step with every node's GST (256 x 4 KiB)
/// and a few thousand tasks fits with room to spare; anything bigger is a bug or an attack.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 << 20;

/// Why bytes from a peer were refused. Each maps onto a protocol `ErrorCode` for the reply.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    Oversized { len: usize, limit: usize },
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("protocol version {got} not supported (this side speaks {PROTOCOL_VERSION})")]
    VersionMismatch { got: u32, request_id: u64 },
    #[error("envelope {request_id} has no body")]
    EmptyBody { request_id: u64 },
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Oversized { .. } => ErrorCode::Oversized,
            DecodeError::Malformed(_) | DecodeError::EmptyBody { .. } => ErrorCode::Malformed,
            DecodeError::VersionMismatch { .. } => ErrorCode::VersionMismatch,
        }
    }

    /// The request id to echo in the error reply, when the bytes got far enough to carry one.
    pub fn request_id(&self) -> u64 {
        match self {
            DecodeError::VersionMismatch { request_id, .. }
            | DecodeError::EmptyBody { request_id } => *request_id,
            _ => 0,
        }
    }
}

/// Decodes an envelope, checking size, version and that a body is present.
pub fn decode_envelope(bytes: &[u8], max_len: usize) -> Result<Envelope, DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::Oversized {
            len: bytes.len(),
            limit: max_len,
        });
    }
    let env = Envelope::decode(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if env.protocol_version != PROTOCOL_VERSION {
        return Err(DecodeError::VersionMismatch {
            got: env.protocol_version,
            request_id: env.request_id,
        });
    }
    if env.body.is_none() {
        return Err(DecodeError::EmptyBody {
            request_id: env.request_id,
        });
    }
    Ok(env)
}

/// Wraps a body into a current-version envelope.
pub fn envelope(request_id: u64, body: Body) -> Envelope {
    Envelope {
        protocol_version: PROTOCOL_VERSION,
        request_id,
        body: Some(body),
    }
}

/// An `Error` reply envelope.
pub fn error_envelope(request_id: u64, code: ErrorCode, message: impl Into<String>) -> Envelope {
    envelope(
        request_id,
        Body::Error(ErrorMsg {
            code: code as i32,
            message: message.into(),
        }),
    )
}

/// Encodes to a fresh buffer.
pub fn encode_envelope(env: &Envelope) -> Vec<u8> {
    env.encode_to_vec()
}

/// Short name of a body, for logs and errors.
pub fn body_name(body: &Body) -> &'static str {
    match body {
        Body::Hello(_) => "Hello",
        Body::Step(_) => "Step",
        Body::EpisodeEnd(_) => "EpisodeEnd",
        Body::Close(_) => "Close",
        Body::Welcome(_) => "Welcome",
        Body::Placement(_) => "Placement",
        Body::Ack(_) => "Ack",
        Body::Error(_) => "Error",
    }
}
