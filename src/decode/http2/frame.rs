//! The 9-byte frame header every HTTP/2 frame starts with (RFC 9113 section 4.1), the
//! frame types and their flags. Kept apart from the payload parsers because the stream
//! decoder needs the header alone to find frame boundaries and to judge plausibility
//! when resynchronising.

use std::fmt;

use super::error::FrameError;

/// Length of the frame header.
pub const FRAME_HEADER_LEN: usize = 9;
/// The initial and smallest SETTINGS_MAX_FRAME_SIZE.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 16_384;
/// The largest SETTINGS_MAX_FRAME_SIZE (and all a 24-bit length can say).
pub const MAX_FRAME_SIZE_LIMIT: u32 = (1 << 24) - 1;

/// END_STREAM on DATA and HEADERS.
pub const FLAG_END_STREAM: u8 = 0x1;
/// ACK on SETTINGS and PING.
pub const FLAG_ACK: u8 = 0x1;
/// END_HEADERS on HEADERS, PUSH_PROMISE and CONTINUATION.
pub const FLAG_END_HEADERS: u8 = 0x4;
/// PADDED on DATA, HEADERS and PUSH_PROMISE.
pub const FLAG_PADDED: u8 = 0x8;
/// PRIORITY on HEADERS.
pub const FLAG_PRIORITY: u8 = 0x20;

/// The frame type octet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    Data,
    Headers,
    Priority,
    RstStream,
    Settings,
    PushPromise,
    Ping,
    GoAway,
    WindowUpdate,
    Continuation,
    /// A type this decoder does not know; RFC 9113 says to ignore such frames.
    Unknown(u8),
}

impl FrameType {
    /// The type of a type octet.
    pub fn from_u8(v: u8) -> FrameType {
        match v {
            0 => FrameType::Data,
            1 => FrameType::Headers,
            2 => FrameType::Priority,
            3 => FrameType::RstStream,
            4 => FrameType::Settings,
            5 => FrameType::PushPromise,
            6 => FrameType::Ping,
            7 => FrameType::GoAway,
            8 => FrameType::WindowUpdate,
            9 => FrameType::Continuation,
            other => FrameType::Unknown(other),
        }
    }

    /// The type octet.
    pub fn as_u8(self) -> u8 {
        match self {
            FrameType::Data => 0,
            FrameType::Headers => 1,
            FrameType::Priority => 2,
            FrameType::RstStream => 3,
            FrameType::Settings => 4,
            FrameType::PushPromise => 5,
            FrameType::Ping => 6,
            FrameType::GoAway => 7,
            FrameType::WindowUpdate => 8,
            FrameType::Continuation => 9,
            FrameType::Unknown(v) => v,
        }
    }

    /// The RFC name (`DATA`, `RST_STREAM`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FrameType::Data => "DATA",
            FrameType::Headers => "HEADERS",
            FrameType::Priority => "PRIORITY",
            FrameType::RstStream => "RST_STREAM",
            FrameType::Settings => "SETTINGS",
            FrameType::PushPromise => "PUSH_PROMISE",
            FrameType::Ping => "PING",
            FrameType::GoAway => "GOAWAY",
            FrameType::WindowUpdate => "WINDOW_UPDATE",
            FrameType::Continuation => "CONTINUATION",
            FrameType::Unknown(_) => "UNKNOWN",
        }
    }

    /// The flags RFC 9113 defines for this type (others must be ignored by receivers).
    pub fn defined_flags(self) -> u8 {
        match self {
            FrameType::Data => FLAG_END_STREAM | FLAG_PADDED,
            FrameType::Headers => FLAG_END_STREAM | FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY,
            FrameType::Settings | FrameType::Ping => FLAG_ACK,
            FrameType::PushPromise => FLAG_END_HEADERS | FLAG_PADDED,
            FrameType::Continuation => FLAG_END_HEADERS,
            FrameType::Priority
            | FrameType::RstStream
            | FrameType::GoAway
            | FrameType::WindowUpdate
            | FrameType::Unknown(_) => 0,
        }
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameType::Unknown(v) => write!(f, "UNKNOWN({v:#04x})"),
            known => f.write_str(known.name()),
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Payload length (24 bits).
    pub len: u32,
    pub kind: FrameType,
    pub flags: u8,
    /// Stream identifier with the reserved bit masked off.
    pub stream_id: u32,
    /// The reserved bit was set (receivers ignore it; a resync scan does not).
    pub reserved_bit: bool,
}

impl FrameHeader {
    /// Whether a flag bit is set.
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// Total bytes of the frame, header included.
    pub fn frame_len(&self) -> u64 {
        FRAME_HEADER_LEN as u64 + u64::from(self.len)
    }

    /// The 9 bytes of this header.
    pub fn to_bytes(&self) -> [u8; FRAME_HEADER_LEN] {
        let l = self.len.to_be_bytes();
        let mut sid = self.stream_id & 0x7fff_ffff;
        if self.reserved_bit {
            sid |= 0x8000_0000;
        }
        let s = sid.to_be_bytes();
        [
            l[1],
            l[2],
            l[3],
            self.kind.as_u8(),
            self.flags,
            s[0],
            s[1],
            s[2],
            s[3],
        ]
    }

    /// Whether this header could start a real frame in traffic from a conforming peer:
    /// a known type, a length within `max_frame_size` and right for the type, only
    /// defined flags, a clear reserved bit and a stream id allowed for the type. Used to
    /// find frame boundaries again after lost bytes.
    pub fn is_plausible(&self, max_frame_size: u32) -> bool {
        if self.reserved_bit
            || self.len > max_frame_size
            || self.flags & !self.kind.defined_flags() != 0
        {
            return false;
        }
        let on_connection = self.stream_id == 0;
        match self.kind {
            FrameType::Unknown(_) => false,
            FrameType::Settings => {
                on_connection
                    && self.len.is_multiple_of(6)
                    && (!self.has(FLAG_ACK) || self.len == 0)
            }
            FrameType::Ping => on_connection && self.len == 8,
            FrameType::GoAway => on_connection && self.len >= 8,
            FrameType::WindowUpdate => self.len == 4,
            FrameType::Priority => !on_connection && self.len == 5,
            FrameType::RstStream => !on_connection && self.len == 4,
            FrameType::PushPromise => !on_connection && self.len >= 4,
            FrameType::Data | FrameType::Headers | FrameType::Continuation => !on_connection,
        }
    }
}

/// Decodes the 9-byte frame header at the start of `input`.
pub fn parse_header(input: &[u8]) -> Result<FrameHeader, FrameError> {
    let Some(b) = input.first_chunk::<FRAME_HEADER_LEN>() else {
        return Err(FrameError::Incomplete {
            needed: FRAME_HEADER_LEN - input.len(),
        });
    };
    let len = u32::from_be_bytes([0, b[0], b[1], b[2]]);
    let sid = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
    Ok(FrameHeader {
        len,
        kind: FrameType::from_u8(b[3]),
        flags: b[4],
        stream_id: sid & 0x7fff_ffff,
        reserved_bit: sid & 0x8000_0000 != 0,
    })
}

/// Checks the stream-id rule for frames that must be on a stream.
pub(crate) fn require_stream(h: &FrameHeader) -> Result<(), FrameError> {
    if h.stream_id == 0 {
        Err(FrameError::StreamIdZero { kind: h.kind })
    } else {
        Ok(())
    }
}

/// Checks the stream-id rule for frames that apply to the connection.
pub(crate) fn require_connection(h: &FrameHeader) -> Result<(), FrameError> {
    if h.stream_id != 0 {
        Err(FrameError::StreamIdNonZero {
            kind: h.kind,
            stream_id: h.stream_id,
        })
    } else {
        Ok(())
    }
}

/// Splits off the Pad Length octet and the padding of a PADDED frame; returns the bytes
/// between them and the pad length. `fixed` is the number of fixed-field bytes that
/// follow the Pad Length octet and must fit before the padding.
pub(crate) fn strip_padding<'a>(
    h: &FrameHeader,
    payload: &'a [u8],
    fixed: usize,
) -> Result<(&'a [u8], Option<u8>), FrameError> {
    if !h.has(FLAG_PADDED) {
        return Ok((payload, None));
    }
    let Some((&pad_len, rest)) = payload.split_first() else {
        return Err(FrameError::FixedLength {
            kind: h.kind,
            expected: "at least 1 (the Pad Length octet)",
            actual: h.len,
        });
    };
    let available = rest.len().saturating_sub(fixed);
    if usize::from(pad_len) > available {
        return Err(FrameError::PaddingTooLong {
            kind: h.kind,
            pad_len,
            available,
        });
    }
    let body = rest
        .get(..rest.len() - usize::from(pad_len))
        .unwrap_or_default();
    Ok((body, Some(pad_len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = FrameHeader {
            len: 0x01_02_03,
            kind: FrameType::Headers,
            flags: FLAG_END_HEADERS | FLAG_END_STREAM,
            stream_id: 0x7fff_fffe,
            reserved_bit: true,
        };
        let b = h.to_bytes();
        assert_eq!(b, [1, 2, 3, 1, 5, 0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(parse_header(&b), Ok(h));
    }

    #[test]
    fn short_header_is_incomplete() {
        assert_eq!(
            parse_header(&[0, 0, 0, 4]),
            Err(FrameError::Incomplete { needed: 5 })
        );
    }

    #[test]
    fn unknown_type_and_names() {
        let h = parse_header(&[0, 0, 0, 0xfa, 0, 0, 0, 0, 1]).unwrap();
        assert_eq!(h.kind, FrameType::Unknown(0xfa));
        assert_eq!(h.kind.to_string(), "UNKNOWN(0xfa)");
        assert_eq!(FrameType::RstStream.to_string(), "RST_STREAM");
        for v in 0..=255u8 {
            assert_eq!(FrameType::from_u8(v).as_u8(), v);
        }
    }

    #[test]
    fn plausibility() {
        let ok = |len, kind, flags, stream_id| {
            FrameHeader {
                len,
                kind,
                flags,
                stream_id,
                reserved_bit: false,
            }
            .is_plausible(DEFAULT_MAX_FRAME_SIZE)
        };
        assert!(ok(0, FrameType::Settings, FLAG_ACK, 0));
        assert!(!ok(6, FrameType::Settings, FLAG_ACK, 0));
        assert!(!ok(0, FrameType::Settings, 0, 1));
        assert!(ok(8, FrameType::Ping, 0, 0));
        assert!(!ok(8, FrameType::Ping, 0x2, 0));
        assert!(ok(100, FrameType::Data, FLAG_END_STREAM, 1));
        assert!(!ok(100, FrameType::Data, 0, 0));
        assert!(!ok(16_385, FrameType::Data, 0, 1));
        assert!(ok(4, FrameType::WindowUpdate, 0, 0));
        assert!(!ok(3, FrameType::RstStream, 0, 1));
        assert!(!ok(0, FrameType::Unknown(0x20), 0, 0));
    }
}
