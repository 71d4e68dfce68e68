//! RST_STREAM frames (RFC 9113 section 6.4): one stream ends abruptly, with a reason.

use super::error::FrameError;
use super::error_code::ErrorCode;
use super::frame::{require_stream, FrameHeader, FrameType};

/// A RST_STREAM frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RstStreamFrame {
    pub stream_id: u32,
    pub error_code: ErrorCode,
}

/// Parses a RST_STREAM payload.
pub fn parse_rst_stream(h: &FrameHeader, payload: &[u8]) -> Result<RstStreamFrame, FrameError> {
    require_stream(h)?;
    let Ok(code) = <[u8; 4]>::try_from(payload) else {
        return Err(FrameError::FixedLength {
            kind: FrameType::RstStream,
            expected: "4",
            actual: h.len,
        });
    };
    Ok(RstStreamFrame {
        stream_id: h.stream_id,
        error_code: ErrorCode::from_u32(u32::from_be_bytes(code)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, stream_id: u32) -> FrameHeader {
        FrameHeader {
            len,
            kind: FrameType::RstStream,
            flags: 0,
            stream_id,
            reserved_bit: false,
        }
    }

    #[test]
    fn parses() {
        let f = parse_rst_stream(&header(4, 7), &[0, 0, 0, 8]).unwrap();
        assert_eq!(f.error_code, ErrorCode::Cancel);
        assert_eq!(f.stream_id, 7);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_rst_stream(&header(3, 7), &[0, 0, 8]),
            Err(FrameError::FixedLength { actual: 3, .. })
        ));
        assert!(matches!(
            parse_rst_stream(&header(4, 0), &[0, 0, 0, 8]),
            Err(FrameError::StreamIdZero { .. })
        ));
    }
}
