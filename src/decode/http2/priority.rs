//! PRIORITY frames (RFC 9113 section 5.3.2 / 6.3) and the priority fields HEADERS may
//! carry. Deprecated by RFC 9113 but still on the wire from older peers.

use super::error::FrameError;
use super::frame::{require_stream, FrameHeader, FrameType};

/// Stream dependency and weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrioritySpec {
    pub exclusive: bool,
    pub dependency: u32,
    /// The weight octet as sent; the weight is this plus one.
    pub weight: u8,
}

/// A PRIORITY frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityFrame {
    pub stream_id: u32,
    pub priority: PrioritySpec,
}

/// Decodes the 5 bytes of priority fields; `bytes` must be exactly that long.
pub(crate) fn parse_priority_fields(
    stream_id: u32,
    bytes: &[u8; 5],
) -> Result<PrioritySpec, FrameError> {
    let dep = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let spec = PrioritySpec {
        exclusive: dep & 0x8000_0000 != 0,
        dependency: dep & 0x7fff_ffff,
        weight: bytes[4],
    };
    if spec.dependency == stream_id {
        return Err(FrameError::SelfDependency { stream_id });
    }
    Ok(spec)
}

/// Parses a PRIORITY payload.
pub fn parse_priority(h: &FrameHeader, payload: &[u8]) -> Result<PriorityFrame, FrameError> {
    require_stream(h)?;
    let Ok(fields) = <&[u8; 5]>::try_from(payload) else {
        return Err(FrameError::FixedLength {
            kind: FrameType::Priority,
            expected: "5",
            actual: h.len,
        });
    };
    Ok(PriorityFrame {
        stream_id: h.stream_id,
        priority: parse_priority_fields(h.stream_id, fields)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, stream_id: u32) -> FrameHeader {
        FrameHeader {
            len,
            kind: FrameType::Priority,
            flags: 0,
            stream_id,
            reserved_bit: false,
        }
    }

    #[test]
    fn parses() {
        let f = parse_priority(&header(5, 5), &[0x80, 0, 0, 3, 15]).unwrap();
        assert_eq!(
            f.priority,
            PrioritySpec {
                exclusive: true,
                dependency: 3,
                weight: 15
            }
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_priority(&header(4, 5), &[0, 0, 0, 3]),
            Err(FrameError::FixedLength { actual: 4, .. })
        ));
        assert!(matches!(
            parse_priority(&header(5, 0), &[0, 0, 0, 3, 1]),
            Err(FrameError::StreamIdZero { .. })
        ));
        assert_eq!(
            parse_priority(&header(5, 3), &[0, 0, 0, 3, 1]),
            Err(FrameError::SelfDependency { stream_id: 3 })
        );
    }
}
