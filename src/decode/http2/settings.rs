//! SETTINGS frames (RFC 9113 section 6.5): a peer's configuration, or the ACK of the
//! other peer's. HEADER_TABLE_SIZE bounds the HPACK dynamic table and MAX_FRAME_SIZE the
//! frames the other side may send, so both matter to the decoders above.

use super::error::FrameError;
use super::frame::{
    require_connection, FrameHeader, FrameType, DEFAULT_MAX_FRAME_SIZE, FLAG_ACK,
    MAX_FRAME_SIZE_LIMIT,
};

/// A SETTINGS parameter identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SettingId {
    HeaderTableSize,
    EnablePush,
    MaxConcurrentStreams,
    InitialWindowSize,
    MaxFrameSize,
    MaxHeaderListSize,
    /// RFC 8441.
    EnableConnectProtocol,
    /// RFC 9218.
    NoRfc7540Priorities,
    Unknown(u16),
}

impl SettingId {
    /// The identifier of a 16-bit value.
    pub fn from_u16(v: u16) -> SettingId {
        match v {
            1 => SettingId::HeaderTableSize,
            2 => SettingId::EnablePush,
            3 => SettingId::MaxConcurrentStreams,
            4 => SettingId::InitialWindowSize,
            5 => SettingId::MaxFrameSize,
            6 => SettingId::MaxHeaderListSize,
            8 => SettingId::EnableConnectProtocol,
            9 => SettingId::NoRfc7540Priorities,
            other => SettingId::Unknown(other),
        }
    }

    /// The 16-bit value.
    pub fn as_u16(self) -> u16 {
        match self {
            SettingId::HeaderTableSize => 1,
            SettingId::EnablePush => 2,
            SettingId::MaxConcurrentStreams => 3,
            SettingId::InitialWindowSize => 4,
            SettingId::MaxFrameSize => 5,
            SettingId::MaxHeaderListSize => 6,
            SettingId::EnableConnectProtocol => 8,
            SettingId::NoRfc7540Priorities => 9,
            SettingId::Unknown(v) => v,
        }
    }

    /// The RFC name (`SETTINGS_MAX_FRAME_SIZE`, ...).
    pub fn name(self) -> &'static str {
        match self {
            SettingId::HeaderTableSize => "SETTINGS_HEADER_TABLE_SIZE",
            SettingId::EnablePush => "SETTINGS_ENABLE_PUSH",
            SettingId::MaxConcurrentStreams => "SETTINGS_MAX_CONCURRENT_STREAMS",
            SettingId::InitialWindowSize => "SETTINGS_INITIAL_WINDOW_SIZE",
            SettingId::MaxFrameSize => "SETTINGS_MAX_FRAME_SIZE",
            SettingId::MaxHeaderListSize => "SETTINGS_MAX_HEADER_LIST_SIZE",
            SettingId::EnableConnectProtocol => "SETTINGS_ENABLE_CONNECT_PROTOCOL",
            SettingId::NoRfc7540Priorities => "SETTINGS_NO_RFC7540_PRIORITIES",
            SettingId::Unknown(_) => "SETTINGS_UNKNOWN",
        }
    }
}

/// One parameter of a SETTINGS frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub id: SettingId,
    pub value: u32,
}

/// A SETTINGS frame, borrowing its (validated) parameter bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingsFrame<'a> {
    pub ack: bool,
    params: &'a [u8],
}

impl<'a> SettingsFrame<'a> {
    /// The parameters, in the order sent.
    pub fn iter(&self) -> impl Iterator<Item = Setting> + 'a {
        self.params.chunks_exact(6).map(decode_setting)
    }

    /// The last value sent for `id`, if any (later values override earlier ones).
    pub fn get(&self, id: SettingId) -> Option<u32> {
        self.iter().filter(|s| s.id == id).map(|s| s.value).last()
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.params.len() / 6
    }

    /// True when no parameter is present (always so for an ACK).
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }
}

fn decode_setting(chunk: &[u8]) -> Setting {
    let b = |i: usize| chunk.get(i).copied().unwrap_or(0);
    Setting {
        id: SettingId::from_u16(u16::from_be_bytes([b(0), b(1)])),
        value: u32::from_be_bytes([b(2), b(3), b(4), b(5)]),
    }
}

fn check_value(s: Setting) -> Result<(), FrameError> {
    let ok = match s.id {
        SettingId::EnablePush
        | SettingId::EnableConnectProtocol
        | SettingId::NoRfc7540Priorities => s.value <= 1,
        SettingId::InitialWindowSize => s.value <= 0x7fff_ffff,
        SettingId::MaxFrameSize => {
            (DEFAULT_MAX_FRAME_SIZE..=MAX_FRAME_SIZE_LIMIT).contains(&s.value)
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(FrameError::SettingsValue {
            id: s.id.as_u16(),
            value: s.value,
        })
    }
}

/// Parses a SETTINGS payload, checking every parameter value.
pub fn parse_settings<'a>(
    h: &FrameHeader,
    payload: &'a [u8],
) -> Result<SettingsFrame<'a>, FrameError> {
    require_connection(h)?;
    let ack = h.has(FLAG_ACK);
    if ack && !payload.is_empty() {
        return Err(FrameError::SettingsAckWithPayload { len: h.len });
    }
    if !payload.len().is_multiple_of(6) {
        return Err(FrameError::FixedLength {
            kind: FrameType::Settings,
            expected: "a multiple of 6",
            actual: h.len,
        });
    }
    for chunk in payload.chunks_exact(6) {
        check_value(decode_setting(chunk))?;
    }
    Ok(SettingsFrame {
        ack,
        params: payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u32, flags: u8, stream_id: u32) -> FrameHeader {
        FrameHeader {
            len,
            kind: FrameType::Settings,
            flags,
            stream_id,
            reserved_bit: false,
        }
    }

    fn param(id: u16, value: u32) -> Vec<u8> {
        let mut v = id.to_be_bytes().to_vec();
        v.extend_from_slice(&value.to_be_bytes());
        v
    }

    #[test]
    fn all_parameters() {
        let mut p = Vec::new();
        for (id, v) in [
            (1, 4096),
            (2, 0),
            (3, 100),
            (4, 65535),
            (5, 16_384),
            (6, 8192),
            (8, 1),
            (9, 1),
            (0x4242, 7),
            (1, 0),
        ] {
            p.extend(param(id, v));
        }
        let f = parse_settings(&header(p.len() as u32, 0, 0), &p).unwrap();
        assert!(!f.ack);
        assert_eq!(f.len(), 10);
        let all: Vec<Setting> = f.iter().collect();
        assert_eq!(all[4].id, SettingId::MaxFrameSize);
        assert_eq!(all[8].id, SettingId::Unknown(0x4242));
        assert_eq!(f.get(SettingId::HeaderTableSize), Some(0));
        assert_eq!(f.get(SettingId::MaxFrameSize), Some(16_384));
        assert_eq!(f.get(SettingId::MaxConcurrentStreams), Some(100));
        for s in all {
            assert_eq!(SettingId::from_u16(s.id.as_u16()), s.id);
        }
    }

    #[test]
    fn ack() {
        let f = parse_settings(&header(0, FLAG_ACK, 0), &[]).unwrap();
        assert!(f.ack);
        assert!(f.is_empty());
        assert_eq!(
            parse_settings(&header(6, FLAG_ACK, 0), &param(1, 1)),
            Err(FrameError::SettingsAckWithPayload { len: 6 })
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            parse_settings(&header(5, 0, 0), &[0; 5]),
            Err(FrameError::FixedLength { actual: 5, .. })
        ));
        assert!(matches!(
            parse_settings(&header(0, 0, 1), &[]),
            Err(FrameError::StreamIdNonZero { stream_id: 1, .. })
        ));
        for (id, v) in [(2, 2), (4, 0x8000_0000), (5, 16_383), (5, 1 << 24)] {
            assert_eq!(
                parse_settings(&header(6, 0, 0), &param(id, v)),
                Err(FrameError::SettingsValue { id, value: v })
            );
        }
    }
}
