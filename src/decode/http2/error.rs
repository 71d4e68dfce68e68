//! What can be wrong with an HTTP/2 frame, said precisely enough that a reader of the
//! output knows which bytes broke which rule of RFC 9113.

use thiserror::Error;

use super::frame::FrameType;

/// A frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// More bytes are needed before anything can be decided.
    #[error("incomplete: {needed} more bytes needed")]
    Incomplete { needed: usize },
    /// The payload slice does not have the length the frame header declares.
    #[error("{kind} frame header declares {declared} payload bytes but {actual} were given")]
    PayloadLength {
        kind: FrameType,
        declared: u32,
        actual: usize,
    },
    /// The frame must belong to a stream but is on stream 0.
    #[error("{kind} frame on stream 0, which is reserved for the connection")]
    StreamIdZero { kind: FrameType },
    /// The frame applies to the connection but names a stream.
    #[error("{kind} frame on stream {stream_id}; it must be on stream 0")]
    StreamIdNonZero { kind: FrameType, stream_id: u32 },
    /// A fixed-size frame with the wrong payload length.
    #[error("{kind} frame payload is {actual} bytes; it must be {expected}")]
    FixedLength {
        kind: FrameType,
        expected: &'static str,
        actual: u32,
    },
    /// The Pad Length field says more padding than there are bytes.
    #[error("{kind} frame padding of {pad_len} bytes exceeds the {available} bytes after the fixed fields")]
    PaddingTooLong {
        kind: FrameType,
        pad_len: u8,
        available: usize,
    },
    /// A stream made to depend on itself (PRIORITY or HEADERS with PRIORITY).
    #[error("stream {stream_id} declared to depend on itself")]
    SelfDependency { stream_id: u32 },
    /// SETTINGS with ACK must be empty.
    #[error("SETTINGS ACK carries a {len}-byte payload; it must be empty")]
    SettingsAckWithPayload { len: u32 },
    /// A SETTINGS parameter value outside the range RFC 9113 section 6.5.2 allows.
    #[error("SETTINGS parameter {id:#06x} has invalid value {value}")]
    SettingsValue { id: u16, value: u32 },
    /// WINDOW_UPDATE must increment by at least 1.
    #[error("WINDOW_UPDATE on stream {stream_id} with an increment of 0")]
    ZeroWindowIncrement { stream_id: u32 },
    /// PUSH_PROMISE must promise a non-zero stream.
    #[error("PUSH_PROMISE on stream {stream_id} promises stream 0")]
    PromisedStreamZero { stream_id: u32 },
}
