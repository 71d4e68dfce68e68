//! HTTP/2 framing (RFC 9113): the 9-byte frame header, one parser per frame type (each
//! borrowing its payload, zero-copy), and [`FrameStream`], the push-style decoder that
//! turns one direction of a reassembled TCP connection into frames, header blocks and
//! DATA bytes, resynchronising after lost bytes. HPACK decoding of header blocks lives in
//! `decode::hpack`; this layer only delimits them.

pub mod connection;
pub mod continuation;
pub mod data;
pub mod error;
pub mod error_code;
pub mod frame;
pub mod goaway;
pub mod headers;
pub mod ping;
pub mod priority;
pub mod push_promise;
pub mod rst_stream;
pub mod settings;
pub mod stream;
pub mod window_update;

pub use connection::Http2Connection;
pub use continuation::{parse_continuation, ContinuationFrame};
pub use data::{parse_data, DataFrame};
pub use error::FrameError;
pub use error_code::ErrorCode;
pub use frame::{parse_header, FrameHeader, FrameType, FRAME_HEADER_LEN};
pub use goaway::{parse_goaway, GoAwayFrame};
pub use headers::{parse_headers, HeadersFrame};
pub use ping::{parse_ping, PingFrame};
pub use priority::{parse_priority, PriorityFrame, PrioritySpec};
pub use push_promise::{parse_push_promise, PushPromiseFrame};
pub use rst_stream::{parse_rst_stream, RstStreamFrame};
pub use settings::{parse_settings, Setting, SettingId, SettingsFrame};
pub use stream::{
    DesyncReason, FrameStream, FrameSummary, HeaderBlockLossReason, Http2Event, CLIENT_PREFACE,
};
pub use window_update::{parse_window_update, WindowUpdateFrame};

/// Any frame, borrowing the bytes it was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame<'a> {
    Data(DataFrame<'a>),
    Headers(HeadersFrame<'a>),
    Priority(PriorityFrame),
    RstStream(RstStreamFrame),
    Settings(SettingsFrame<'a>),
    PushPromise(PushPromiseFrame<'a>),
    Ping(PingFrame),
    GoAway(GoAwayFrame<'a>),
    WindowUpdate(WindowUpdateFrame),
    Continuation(ContinuationFrame<'a>),
    /// A frame of a type this decoder does not know (to be ignored, per RFC 9113).
    Unknown {
        kind: u8,
        payload: &'a [u8],
    },
}

/// Parses a frame payload described by `header`; `payload` must be exactly
/// `header.len` bytes.
pub fn parse_frame<'a>(header: &FrameHeader, payload: &'a [u8]) -> Result<Frame<'a>, FrameError> {
    if payload.len() as u64 != u64::from(header.len) {
        return Err(FrameError::PayloadLength {
            kind: header.kind,
            declared: header.len,
            actual: payload.len(),
        });
    }
    Ok(match header.kind {
        FrameType::Data => Frame::Data(parse_data(header, payload)?),
        FrameType::Headers => Frame::Headers(parse_headers(header, payload)?),
        FrameType::Priority => Frame::Priority(parse_priority(header, payload)?),
        FrameType::RstStream => Frame::RstStream(parse_rst_stream(header, payload)?),
        FrameType::Settings => Frame::Settings(parse_settings(header, payload)?),
        FrameType::PushPromise => Frame::PushPromise(parse_push_promise(header, payload)?),
        FrameType::Ping => Frame::Ping(parse_ping(header, payload)?),
        FrameType::GoAway => Frame::GoAway(parse_goaway(header, payload)?),
        FrameType::WindowUpdate => Frame::WindowUpdate(parse_window_update(header, payload)?),
        FrameType::Continuation => Frame::Continuation(parse_continuation(header, payload)?),
        FrameType::Unknown(kind) => Frame::Unknown { kind, payload },
    })
}

/// Parses one whole frame at the start of `input`: its header, the frame, and the bytes
/// after it. `Incomplete` says how many more bytes are needed; frames longer than
/// `max_frame_size` are refused before anything is buffered for them.
pub fn parse_frame_bytes(
    input: &[u8],
    max_frame_size: u32,
) -> Result<(FrameHeader, Frame<'_>, &[u8]), FrameBytesError> {
    let header = parse_header(input).map_err(FrameBytesError::Frame)?;
    if header.len > max_frame_size {
        return Err(FrameBytesError::TooLarge {
            header,
            max_frame_size,
        });
    }
    let total = FRAME_HEADER_LEN + header.len as usize;
    let Some(whole) = input.get(..total) else {
        return Err(FrameBytesError::Frame(FrameError::Incomplete {
            needed: total - input.len(),
        }));
    };
    let rest = input.get(total..).unwrap_or_default();
    let payload = whole.get(FRAME_HEADER_LEN..).unwrap_or_default();
    let frame = parse_frame(&header, payload).map_err(FrameBytesError::Frame)?;
    Ok((header, frame, rest))
}

/// Why [`parse_frame_bytes`] gave no frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameBytesError {
    #[error(transparent)]
    Frame(FrameError),
    #[error("{} frame of {} bytes exceeds the maximum frame size {max_frame_size}", header.kind, header.len)]
    TooLarge {
        header: FrameHeader,
        max_frame_size: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use frame::{FLAG_ACK, FLAG_END_HEADERS};

    #[test]
    fn whole_frame_from_bytes() {
        let mut b = vec![0, 0, 0, 4, FLAG_ACK, 0, 0, 0, 0];
        b.extend_from_slice(&[0, 0, 3, 1, FLAG_END_HEADERS, 0, 0, 0, 1, 0x82, 0x86, 0x84]);
        let (h, f, rest) = parse_frame_bytes(&b, 16_384).unwrap();
        assert_eq!(h.kind, FrameType::Settings);
        assert!(matches!(f, Frame::Settings(s) if s.ack));
        let (h, f, rest) = parse_frame_bytes(rest, 16_384).unwrap();
        assert_eq!(h.stream_id, 1);
        assert!(matches!(f, Frame::Headers(hf) if hf.fragment == [0x82, 0x86, 0x84]));
        assert!(rest.is_empty());
    }

    #[test]
    fn incomplete_and_too_large() {
        let b = [0, 0, 5, 0, 0, 0, 0, 0, 1, b'a'];
        assert_eq!(
            parse_frame_bytes(&b, 16_384).unwrap_err(),
            FrameBytesError::Frame(FrameError::Incomplete { needed: 4 })
        );
        let b = [0x01, 0, 0, 0, 0, 0, 0, 0, 1];
        assert!(matches!(
            parse_frame_bytes(&b, 16_384),
            Err(FrameBytesError::TooLarge { .. })
        ));
    }

    #[test]
    fn unknown_frame_kept() {
        let b = [0, 0, 2, 0x42, 0xff, 0, 0, 0, 0, 1, 2];
        let (_, f, _) = parse_frame_bytes(&b, 16_384).unwrap();
        assert_eq!(
            f,
            Frame::Unknown {
                kind: 0x42,
                payload: &[1, 2]
            }
        );
    }

    #[test]
    fn payload_length_mismatch() {
        let h = parse_header(&[0, 0, 4, 3, 0, 0, 0, 0, 1]).unwrap();
        assert!(matches!(
            parse_frame(&h, &[0, 0, 0]),
            Err(FrameError::PayloadLength {
                declared: 4,
                actual: 3,
                ..
            })
        ));
    }

    /// Random and mutated frames: parsing must never panic.
    #[test]
    fn random_frames_no_panic() {
        let mut rng = crate::test_rng::XorShift(0x1234_5678_9abc_def1);
        let mut rnd = move || rng.next();
        for _ in 0..200_000 {
            let len = (rnd() % 40) as usize;
            let mut b: Vec<u8> = (0..len + 9).map(|_| rnd() as u8).collect();
            // Mostly well-formed headers with random type/flags, so payload parsers run.
            b[0] = 0;
            b[1] = 0;
            b[2] = len as u8;
            b[3] = (rnd() % 11) as u8;
            if rnd() % 2 == 0 {
                b[5..9].copy_from_slice(&[0, 0, 0, 0]);
            }
            let _ = parse_frame_bytes(&b, 16_384);
            let cut = (rnd() as usize) % (b.len() + 1);
            let _ = parse_frame_bytes(&b[..cut], 16_384);
        }
    }
}
