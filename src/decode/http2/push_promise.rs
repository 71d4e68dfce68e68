//! PUSH_PROMISE frames (RFC 9113 section 6.6): a server announces a stream it will push.
//! gRPC never pushes, but the header block inside still updates the HPACK table, so it
//! must be decoded to keep that table in step.

use super::error::FrameError;
use super::frame::{require_stream, strip_padding, FrameHeader, FrameType, FLAG_END_HEADERS};

/// A PUSH_PROMISE frame, borrowing its header block fragment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushPromiseFrame<'a> {
    pub stream_id: u32,
    pub promised_stream_id: u32,
    pub end_headers: bool,
    /// The Pad Length octet, when PADDED.
    pub pad_len: Option<u8>,
    pub fragment: &'a [u8],
}

/// Parses a PUSH_PROMISE payload.
pub fn parse_push_promise<'a>(
    h: &FrameHeader,
    payload: &'a [u8],
) -> Result<PushPromiseFrame<'a>, FrameError> {
    require_stream(h)?;
    let (body, pad_len) = strip_padding(h, payload, 4)?;
    let Some((id, fragment)) = body.split_first_chunk::<4>() else {
        return Err(FrameError::FixedLength {
            kind: FrameType::PushPromise,
            expected: "at least 4 (plus 1 with PADDED)",
            actual: h.len,
        });
    };
    let promised_stream_id = u32::from_be_bytes(*id) & 0x7fff_ffff;
    if promised_stream_id == 0 {
        return Err(FrameError::PromisedStreamZero {
            stream_id: h.stream_id,
        });
    }
    Ok(PushPromiseFrame {
        stream_id: h.stream_id,
        promised_stream_id,
        end_headers: h.has(FLAG_END_HEADERS),
        pad_len,
        fragment,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::http2::frame::FLAG_PADDED;

    fn header(len: u32, flags: u8, stream_id: u32) -> FrameHeader {
        FrameHeader {
            len,
            kind: FrameType::PushPromise,
            flags,
            stream_id,
            reserved_bit: false,
        }
    }

    #[test]
    fn parses_padded() {
        let payload = [1, 0x80, 0, 0, 2, 0x82, 0];
        let f =
            parse_push_promise(&header(7, FLAG_PADDED | FLAG_END_HEADERS, 1), &payload).unwrap();
        assert_eq!(f.promised_stream_id, 2);
        assert_eq!(f.fragment, &[0x82]);
        assert_eq!(f.pad_len, Some(1));
        assert!(f.end_headers);
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_push_promise(&header(3, 0, 1), &[0, 0, 2]),
            Err(FrameError::FixedLength { .. })
        ));
        assert_eq!(
            parse_push_promise(&header(4, 0, 1), &[0, 0, 0, 0]),
            Err(FrameError::PromisedStreamZero { stream_id: 1 })
        );
        assert!(matches!(
            parse_push_promise(&header(6, FLAG_PADDED, 1), &[2, 0, 0, 0, 2, 0]),
            Err(FrameError::PaddingTooLong { .. })
        ));
    }
}
