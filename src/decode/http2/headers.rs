//! HEADERS frames (RFC 9113 section 6.2): open a stream (or carry trailers) with the first
//! fragment of an HPACK header block, optionally padded and with priority fields.

use super::error::FrameError;
use super::frame::{
    require_stream, strip_padding, FrameHeader, FLAG_END_HEADERS, FLAG_END_STREAM, FLAG_PRIORITY,
};
use super::priority::{parse_priority_fields, PrioritySpec};

/// A HEADERS frame, borrowing its header block fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadersFrame<'a> {
    pub stream_id: u32,
    pub end_stream: bool,
    /// When false, CONTINUATION frames carry the rest of the block.
    pub end_headers: bool,
    pub priority: Option<PrioritySpec>,
    /// The Pad Length octet, when PADDED.
    pub pad_len: Option<u8>,
    /// HPACK-encoded header block fragment.
    pub fragment: &'a [u8],
}

/// Parses a HEADERS payload.
pub fn parse_headers<'a>(
    h: &FrameHeader,
    payload: &'a [u8],
) -> Result<HeadersFrame<'a>, FrameError> {
    require_stream(h)?;
    let fixed = if h.has(FLAG_PRIORITY) { 5 } else { 0 };
    let (body, pad_len) = strip_padding(h, payload, fixed)?;
    let (priority, fragment) = if h.has(FLAG_PRIORITY) {
        let Some((fields, rest)) = body.split_first_chunk::<5>() else {
            return Err(FrameError::FixedLength {
                kind: h.kind,
                expected: "at least 5 with PRIORITY (plus 1 with PADDED)",
                actual: h.len,
            });
        };
        (Some(parse_priority_fields(h.stream_id, fields)?), rest)
    } else {
        (None, body)
    };
    Ok(HeadersFrame {
        stream_id: h.stream_id,
        end_stream: h.has(FLAG_END_STREAM),
        end_headers: h.has(FLAG_END_HEADERS),
        priority,
        pad_len,
        fragment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::http2::frame::{FrameType, FLAG_PADDED};

    fn header(len: u32, flags: u8, stream_id: u32) -> FrameHeader {
        FrameHeader {
            len,
            kind: FrameType::Headers,
            flags,
            stream_id,
            reserved_bit: false,
        }
    }

    #[test]
    fn plain() {
        let f = parse_headers(&header(3, FLAG_END_HEADERS, 1), &[0x82, 0x86, 0x84]).unwrap();
        assert_eq!(f.fragment, &[0x82, 0x86, 0x84]);
        assert!(f.end_headers);
        assert!(!f.end_stream);
        assert_eq!(f.priority, None);
    }

    #[test]
    fn padded_with_priority() {
        // Pad Length 2, E + dependency 1, weight 200, fragment "xy", padding.
        let payload = [2, 0x80, 0, 0, 1, 200, b'x', b'y', 0, 0];
        let flags = FLAG_PADDED | FLAG_PRIORITY | FLAG_END_STREAM;
        let f = parse_headers(&header(10, flags, 3), &payload).unwrap();
        assert_eq!(f.fragment, b"xy");
        assert_eq!(f.pad_len, Some(2));
        assert!(f.end_stream);
        assert_eq!(
            f.priority,
            Some(PrioritySpec {
                exclusive: true,
                dependency: 1,
                weight: 200
            })
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_headers(&header(0, 0, 0), &[]),
            Err(FrameError::StreamIdZero { .. })
        ));
        // Padding may not eat the priority fields.
        assert!(matches!(
            parse_headers(
                &header(7, FLAG_PADDED | FLAG_PRIORITY, 1),
                &[2, 0, 0, 0, 0, 9, 0]
            ),
            Err(FrameError::PaddingTooLong {
                pad_len: 2,
                available: 1,
                ..
            })
        ));
        assert!(matches!(
            parse_headers(&header(4, FLAG_PRIORITY, 1), &[0, 0, 0, 0]),
            Err(FrameError::FixedLength { .. })
        ));
        assert!(matches!(
            parse_headers(&header(5, FLAG_PRIORITY, 1), &[0, 0, 0, 1, 0]),
            Err(FrameError::SelfDependency { stream_id: 1 })
        ));
    }
}
