//! CONTINUATION frames (RFC 9113 section 6.10): the rest of a header block that did not
//! fit in its HEADERS or PUSH_PROMISE frame.

use super::error::FrameError;
use super::frame::{require_stream, FrameHeader, FLAG_END_HEADERS};

/// A CONTINUATION frame, borrowing its header block fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContinuationFrame<'a> {
    pub stream_id: u32,
    pub end_headers: bool,
    pub fragment: &'a [u8],
}

/// Parses a CONTINUATION payload.
pub fn parse_continuation<'a>(
    h: &FrameHeader,
    payload: &'a [u8],
) -> Result<ContinuationFrame<'a>, FrameError> {
    require_stream(h)?;
    Ok(ContinuationFrame {
        stream_id: h.stream_id,
        end_headers: h.has(FLAG_END_HEADERS),
        fragment: payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::http2::frame::FrameType;

    fn header(len: u32, flags: u8, stream_id: u32) -> FrameHeader {
        FrameHeader {
            len,
            kind: FrameType::Continuation,
            flags,
            stream_id,
            reserved_bit: false,
        }
    }

    #[test]
    fn parses() {
        let f = parse_continuation(&header(2, FLAG_END_HEADERS, 1), &[0x41, 0x8a]).unwrap();
        assert!(f.end_headers);
        assert_eq!(f.fragment, &[0x41, 0x8a]);
    }

    #[test]
    fn stream_zero() {
        assert!(matches!(
            parse_continuation(&header(0, 0, 0), &[]),
            Err(FrameError::StreamIdZero { .. })
        ));
    }
}
