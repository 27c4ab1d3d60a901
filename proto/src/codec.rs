//! Encoding and checked decoding of bridge envelopes: size limit, protocol version, body, and
//! the envelope header (version, request id) read on its own so that even a message whose body
//! does not decode gets an error that names its request.

use crate::bridge::{envelope::Body, Envelope, Error as ErrorMsg, ErrorCode};
use prost::Message;

/// Protocol v1: the base every peer speaks, and the version of every Hello and its reply.
pub const PROTOCOL_V1: u32 = 1;
/// Protocol v2: each distinct Global State Table once per Step (`Step.gst_tables`).
pub const PROTOCOL_V2: u32 = 2;
/// The version of a Hello and its reply (and of a session that negotiated nothing).
pub const PROTOCOL_VERSION: u32 = PROTOCOL_V1;
/// Every version this crate speaks, lowest first.
pub const SUPPORTED_VERSIONS: &[u32] = &[PROTOCOL_V1, PROTOCOL_V2];
/// Largest envelope accepted by default: a 256-node v1 Step with every node's GST (256 x 4
/// KiB) and a few thousand tasks fits with room to spare; anything bigger is a bug or an
/// attack. Larger messages are answered with OVERSIZED (up to the receiver's hard cap).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 8 << 20;
/// Messages up to this multiple of the limit are received and refused with an OVERSIZED
/// reply; beyond it the transport drops the connection before buffering them (memory bound).
pub const HARD_CAP_FACTOR: usize = 4;

/// Why bytes from a peer were refused. Each maps onto a protocol `ErrorCode` for the reply and
/// carries the request id to echo (0 when not even the header could be read).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {len} bytes exceeds the limit of {limit} bytes")]
    Oversized {
        len: usize,
        limit: usize,
        request_id: u64,
    },
    #[error("malformed envelope: {reason}")]
    Malformed { reason: String, request_id: u64 },
    #[error("protocol version {got} not supported (this side speaks {SUPPORTED_VERSIONS:?})")]
    VersionMismatch { got: u32, request_id: u64 },
    #[error("envelope {request_id} has no body")]
    EmptyBody { request_id: u64 },
}

impl DecodeError {
    pub fn code(&self) -> ErrorCode {
        match self {
            DecodeError::Oversized { .. } => ErrorCode::Oversized,
            DecodeError::Malformed { .. } | DecodeError::EmptyBody { .. } => ErrorCode::Malformed,
            DecodeError::VersionMismatch { .. } => ErrorCode::VersionMismatch,
        }
    }

    /// The request id to echo in the error reply: the header's whenever it could be read.
    pub fn request_id(&self) -> u64 {
        match self {
            DecodeError::Oversized { request_id, .. }
            | DecodeError::Malformed { request_id, .. }
            | DecodeError::VersionMismatch { request_id, .. }
            | DecodeError::EmptyBody { request_id } => *request_id,
        }
    }
}

/// The envelope's header fields, as far as they could be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Header {
    pub protocol_version: Option<u32>,
    pub request_id: Option<u64>,
}

/// Reads fields 1 (`protocol_version`) and 2 (`request_id`) of an encoded envelope without
/// decoding its body: a scan of the top-level fields that stops at the first thing that is
/// not a well-formed field, and skips the body by its length (never reading into it), so a
/// header in front of a garbage or oversized body is still found.
pub fn peek_header(bytes: &[u8]) -> Header {
    let mut h = Header::default();
    let mut rest = bytes;
    while !rest.is_empty() && (h.protocol_version.is_none() || h.request_id.is_none()) {
        let Some((key, n)) = varint(rest) else { break };
        rest = &rest[n..];
        let (field, wire_type) = (key >> 3, key & 7);
        match wire_type {
            0 => {
                let Some((v, n)) = varint(rest) else { break };
                rest = &rest[n..];
                match field {
                    1 => h.protocol_version = Some(v.min(u32::MAX as u64) as u32),
                    2 => h.request_id = Some(v),
                    _ => {}
                }
            }
            2 => {
                let Some((len, n)) = varint(rest) else { break };
                let skip = n.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
                if skip > rest.len() {
                    break;
                }
                rest = &rest[skip..];
            }
            1 if rest.len() >= 8 => rest = &rest[8..],
            5 if rest.len() >= 4 => rest = &rest[4..],
            _ => break,
        }
    }
    h
}

/// A varint at the start of `b`: (value, bytes used).
fn varint(b: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().take(10).enumerate() {
        v |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// Decodes an envelope, checking size, that its version is one this crate speaks, and that a
/// body is present. Whether the version is the one the session expects is the session's
/// business.
pub fn decode_envelope(bytes: &[u8], max_len: usize) -> Result<Envelope, DecodeError> {
    let mut env = Envelope::default();
    decode_envelope_into(bytes, max_len, &mut env)?;
    Ok(env)
}

/// [`decode_envelope`] into an existing envelope: its previous content is replaced, and a
/// Step it held lends its allocations to the new one (see [`crate::fastdecode`]).
pub fn decode_envelope_into(
    bytes: &[u8],
    max_len: usize,
    env: &mut Envelope,
) -> Result<(), DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::Oversized {
            len: bytes.len(),
            limit: max_len,
            request_id: peek_header(bytes).request_id.unwrap_or(0),
        });
    }
    if let Err(e) = crate::fastdecode::merge_envelope(bytes, env) {
        return Err(DecodeError::Malformed {
            reason: e.to_string(),
            request_id: peek_header(bytes).request_id.unwrap_or(0),
        });
    }
    if !SUPPORTED_VERSIONS.contains(&env.protocol_version) {
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
    Ok(())
}

/// Wraps a body into a v1 envelope (the Hello's version, and the whole session's when it
/// negotiated nothing). See [`envelope_v`].
pub fn envelope(request_id: u64, body: Body) -> Envelope {
    envelope_v(PROTOCOL_VERSION, request_id, body)
}

/// Wraps a body into an envelope of protocol `version`.
pub fn envelope_v(version: u32, request_id: u64, body: Body) -> Envelope {
    Envelope {
        protocol_version: version,
        request_id,
        body: Some(body),
    }
}

/// An `Error` reply envelope (v1; see [`error_envelope_v`]).
pub fn error_envelope(request_id: u64, code: ErrorCode, message: impl Into<String>) -> Envelope {
    error_envelope_v(PROTOCOL_VERSION, request_id, code, message)
}

/// An `Error` reply envelope of protocol `version`.
pub fn error_envelope_v(
    version: u32,
    request_id: u64,
    code: ErrorCode,
    message: impl Into<String>,
) -> Envelope {
    envelope_v(
        version,
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

/// Encodes into `buf` (cleared first), reusing its allocation.
pub fn encode_envelope_into(env: &Envelope, buf: &mut Vec<u8>) {
    buf.clear();
    buf.reserve(env.encoded_len());
    env.encode(buf).expect("a Vec grows as needed");
}

/// The version a v2-capable peer and `offered` (a Hello's `protocol_versions`, empty meaning
/// [1]) have in common: the highest both speak, or `None`.
pub fn negotiate(offered: &[u32]) -> Option<u32> {
    if offered.is_empty() {
        return Some(PROTOCOL_V1);
    }
    SUPPORTED_VERSIONS
        .iter()
        .rev()
        .copied()
        .find(|v| offered.contains(v))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::{Close, Step};

    #[test]
    fn the_header_is_read_in_front_of_a_garbage_or_oversized_body() {
        let good = encode_envelope(&envelope(77, Body::Close(Close::default())));
        assert_eq!(
            peek_header(&good),
            Header {
                protocol_version: Some(1),
                request_id: Some(77)
            }
        );
        // The body's length prefix promises more than there is: a malformed body.
        let mut bad = encode_envelope(&envelope_v(2, 42, Body::Step(Step::default())));
        bad.extend_from_slice(&[0x5a, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3]);
        let e = decode_envelope(&bad, 1 << 20).unwrap_err();
        assert!(
            matches!(e, DecodeError::Malformed { request_id: 42, .. }),
            "{e:?}"
        );
        assert_eq!(e.code(), ErrorCode::Malformed);
        let e = decode_envelope(&bad, 4).unwrap_err();
        assert!(
            matches!(e, DecodeError::Oversized { request_id: 42, .. }),
            "{e:?}"
        );
        // Pure garbage: no header, request id 0.
        assert_eq!(peek_header(&[0xff; 12]), Header::default());
        assert_eq!(
            decode_envelope(&[0xff; 12], 100).unwrap_err().request_id(),
            0
        );
        assert_eq!(peek_header(&[]), Header::default());
    }

    #[test]
    fn versions_negotiate_to_the_highest_common_one() {
        assert_eq!(negotiate(&[]), Some(1));
        assert_eq!(negotiate(&[1]), Some(1));
        assert_eq!(negotiate(&[1, 2]), Some(2));
        assert_eq!(negotiate(&[2, 1, 7]), Some(2));
        assert_eq!(negotiate(&[3, 4]), None);
        let v3 = encode_envelope(&envelope_v(3, 9, Body::Close(Close::default())));
        let e = decode_envelope(&v3, 100).unwrap_err();
        assert_eq!((e.code(), e.request_id()), (ErrorCode::VersionMismatch, 9));
        assert!(decode_envelope(
            &encode_envelope(&envelope_v(2, 9, Body::Close(Close::default()))),
            100
        )
        .is_ok());
    }
}
