//! WINDOW_UPDATE frames (RFC 9113 section 6.9): flow-control credit for a stream or (on
//! stream 0) the whole connection. Useful to explain stalls: a sender waiting for credit.

use super::error::FrameError;
use super::frame::{FrameHeader, FrameType};

/// A WINDOW_UPDATE frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowUpdateFrame {
    /// 0 for the connection window.
    pub stream_id: u32,
    pub increment: u32,
}

/// Parses a WINDOW_UPDATE payload.
pub fn parse_window_update(
    h: &FrameHeader,
    payload: &[u8],
) -> Result<WindowUpdateFrame, FrameError> {
    let Ok(b) = <[u8; 4]>::try_from(payload) else {
        return Err(FrameError::FixedLength {
            kind: FrameType::WindowUpdate,
            expected: "4",
            actual: h.len,
        });
    };
    let increment = u32::from_be_bytes(b) & 0x7fff_ffff;
    if increment == 0 {
        return Err(FrameError::ZeroWindowIncrement {
            stream_id: h.stream_id,
        });
    }
    Ok(WindowUpdateFrame {
        stream_id: h.stream_id,
        increment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, stream_id: u32) -> FrameHeader {
        FrameHeader {
            len,
            kind: FrameType::WindowUpdate,
            flags: 0,
            stream_id,
            reserved_bit: false,
        }
    }

    #[test]
    fn parses() {
        let f = parse_window_update(&header(4, 0), &[0x80, 0, 0x10, 0]).unwrap();
        assert_eq!(f.increment, 4096);
        assert_eq!(f.stream_id, 0);
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse_window_update(&header(4, 5), &[0, 0, 0, 0]),
            Err(FrameError::ZeroWindowIncrement { stream_id: 5 })
        );
        assert!(matches!(
            parse_window_update(&header(5, 5), &[0; 5]),
            Err(FrameError::FixedLength { actual: 5, .. })
        ));
    }
}
