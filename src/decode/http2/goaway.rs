//! GOAWAY frames (RFC 9113 section 6.8): a peer stops the connection, saying the last
//! stream it processed, why, and optional debug text (grpc-go puts e.g. "too_many_pings"
//! there).

use super::error::FrameError;
use super::error_code::ErrorCode;
use super::frame::{require_connection, FrameHeader, FrameType};

/// A GOAWAY frame, borrowing its debug data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoAwayFrame<'a> {
    pub last_stream_id: u32,
    pub error_code: ErrorCode,
    pub debug_data: &'a [u8],
}

/// Parses a GOAWAY payload.
pub fn parse_goaway<'a>(h: &FrameHeader, payload: &'a [u8]) -> Result<GoAwayFrame<'a>, FrameError> {
    require_connection(h)?;
    let Some((fixed, debug_data)) = payload.split_first_chunk::<8>() else {
        return Err(FrameError::FixedLength {
            kind: FrameType::GoAway,
            expected: "at least 8",
            actual: h.len,
        });
    };
    let last = u32::from_be_bytes([fixed[0], fixed[1], fixed[2], fixed[3]]);
    let code = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
    Ok(GoAwayFrame {
        last_stream_id: last & 0x7fff_ffff,
        error_code: ErrorCode::from_u32(code),
        debug_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, stream_id: u32) -> FrameHeader {
        FrameHeader {
            len,
            kind: FrameType::GoAway,
            flags: 0,
            stream_id,
            reserved_bit: false,
        }
    }

    #[test]
    fn parses() {
        let mut p = vec![0x80, 0, 0, 9, 0, 0, 0, 0xb];
        p.extend_from_slice(b"too_many_pings");
        let f = parse_goaway(&header(p.len() as u32, 0), &p).unwrap();
        assert_eq!(f.last_stream_id, 9);
        assert_eq!(f.error_code, ErrorCode::EnhanceYourCalm);
        assert_eq!(f.debug_data, b"too_many_pings");
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_goaway(&header(7, 0), &[0; 7]),
            Err(FrameError::FixedLength { actual: 7, .. })
        ));
        assert!(matches!(
            parse_goaway(&header(8, 1), &[0; 8]),
            Err(FrameError::StreamIdNonZero { .. })
        ));
    }
}
