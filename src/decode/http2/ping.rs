//! PING frames (RFC 9113 section 6.7): liveness and round-trip measurement; grpc-go also
//! uses them for keepalive and bandwidth estimation (BDP pings).

use super::error::FrameError;
use super::frame::{require_connection, FrameHeader, FrameType, FLAG_ACK};

/// A PING frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingFrame {
    pub ack: bool,
    pub opaque: [u8; 8],
}

/// Parses a PING payload.
pub fn parse_ping(h: &FrameHeader, payload: &[u8]) -> Result<PingFrame, FrameError> {
    require_connection(h)?;
    let Ok(opaque) = <[u8; 8]>::try_from(payload) else {
        return Err(FrameError::FixedLength {
            kind: FrameType::Ping,
            expected: "8",
            actual: h.len,
        });
    };
    Ok(PingFrame {
        ack: h.has(FLAG_ACK),
        opaque,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, flags: u8, stream_id: u32) -> FrameHeader {
        FrameHeader {
            len,
            kind: FrameType::Ping,
            flags,
            stream_id,
            reserved_bit: false,
        }
    }

    #[test]
    fn parses() {
        let f = parse_ping(&header(8, FLAG_ACK, 0), &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert!(f.ack);
        assert_eq!(f.opaque, [1, 2, 3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_ping(&header(7, 0, 0), &[0; 7]),
            Err(FrameError::FixedLength { actual: 7, .. })
        ));
        assert!(matches!(
            parse_ping(&header(8, 0, 3), &[0; 8]),
            Err(FrameError::StreamIdNonZero { stream_id: 3, .. })
        ));
    }
}
