//! DATA frames (RFC 9113 section 6.1): a stream's body bytes, possibly padded.

use super::error::FrameError;
use super::frame::{require_stream, strip_padding, FrameHeader, FLAG_END_STREAM};

/// A DATA frame, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFrame<'a> {
    pub stream_id: u32,
    pub end_stream: bool,
    /// The data, without padding.
    pub data: &'a [u8],
    /// The Pad Length octet, when PADDED.
    pub pad_len: Option<u8>,
}

impl DataFrame<'_> {
    /// Bytes of padding overhead (the Pad Length octet and the padding).
    pub fn padding_overhead(&self) -> u32 {
        self.pad_len.map_or(0, |p| u32::from(p) + 1)
    }
}

/// Parses a DATA payload.
pub fn parse_data<'a>(h: &FrameHeader, payload: &'a [u8]) -> Result<DataFrame<'a>, FrameError> {
    require_stream(h)?;
    let (data, pad_len) = strip_padding(h, payload, 0)?;
    Ok(DataFrame {
        stream_id: h.stream_id,
        end_stream: h.has(FLAG_END_STREAM),
        data,
        pad_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::http2::frame::{FrameType, FLAG_PADDED};

    fn header(len: u32, flags: u8, stream_id: u32) -> FrameHeader {
        FrameHeader {
            len,
            kind: FrameType::Data,
            flags,
            stream_id,
            reserved_bit: false,
        }
    }

    #[test]
    fn plain() {
        let f = parse_data(&header(3, FLAG_END_STREAM, 1), b"abc").unwrap();
        assert_eq!(f.data, b"abc");
        assert!(f.end_stream);
        assert_eq!(f.pad_len, None);
        assert_eq!(f.padding_overhead(), 0);
    }

    #[test]
    fn padded() {
        let payload = [2, b'h', b'i', 0, 0];
        let f = parse_data(&header(5, FLAG_PADDED, 3), &payload).unwrap();
        assert_eq!(f.data, b"hi");
        assert_eq!(f.pad_len, Some(2));
        assert_eq!(f.padding_overhead(), 3);
        // Padding filling everything after the Pad Length octet is allowed.
        let f = parse_data(&header(3, FLAG_PADDED, 3), &[2, 0, 0]).unwrap();
        assert_eq!(f.data, b"");
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_data(&header(0, 0, 0), b""),
            Err(FrameError::StreamIdZero {
                kind: FrameType::Data
            })
        );
        assert_eq!(
            parse_data(&header(3, FLAG_PADDED, 1), &[3, 0, 0]),
            Err(FrameError::PaddingTooLong {
                kind: FrameType::Data,
                pad_len: 3,
                available: 2
            })
        );
        assert!(matches!(
            parse_data(&header(0, FLAG_PADDED, 1), &[]),
            Err(FrameError::FixedLength { .. })
        ));
    }
}
