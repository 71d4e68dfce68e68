//! Scrubbing the gRPC messages of etcd's auth calls: which calls carry secrets in which
//! protobuf fields (numbers from etcd's api/etcdserverpb/rpc.proto), and an assembler
//! that collects one stream direction's length-prefixed messages across DATA frames and
//! overwrites the secret field values in place with `*` (the length prefix unchanged).

use std::ops::Range;

/// Top-level fields holding secrets in one direction of an auth call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretFields {
    pub request: &'static [u32],
    pub response: &'static [u32],
}

/// The secret fields of a call, by its `:path`; None for calls that carry none.
pub fn secret_fields(path: &[u8]) -> Option<SecretFields> {
    match path {
        // AuthenticateRequest.password 2; AuthenticateResponse.token 2.
        b"/etcdserverpb.Auth/Authenticate" => Some(SecretFields {
            request: &[2],
            response: &[2],
        }),
        // AuthUserAddRequest.password 2, hashedPassword 4.
        b"/etcdserverpb.Auth/UserAdd" => Some(SecretFields {
            request: &[2, 4],
            response: &[],
        }),
        // AuthUserChangePasswordRequest.password 2, hashedPassword 3.
        b"/etcdserverpb.Auth/UserChangePassword" => Some(SecretFields {
            request: &[2, 3],
            response: &[],
        }),
        _ => None,
    }
}

/// Auth messages are tiny; one larger than this is not parsed but blanked.
pub const MAX_AUTH_MESSAGE: usize = 64 << 10;

/// What the assembler asks the caller to overwrite: `len` bytes from stream `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overwrite {
    pub offset: u64,
    pub len: usize,
}

/// Counts of what the assembler did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MessageCounts {
    pub fields_redacted: u64,
    /// Compressed messages: their bytes cannot be edited field by field.
    pub compressed_blanked: u64,
    /// Messages too large or not valid protobuf.
    pub unparsable_blanked: u64,
}

/// The messages of one direction of one auth stream.
#[derive(Debug)]
pub struct MessageAssembler {
    fields: &'static [u32],
    state: State,
}

#[derive(Debug)]
enum State {
    Prefix {
        bytes: [u8; 5],
        have: usize,
    },
    /// Collecting a message body; `spans` maps body positions to stream offsets.
    Body {
        left: usize,
        body: Vec<u8>,
        spans: Vec<(usize, u64)>,
    },
    /// Overwriting a message body as it passes.
    Blank {
        left: usize,
    },
}

impl MessageAssembler {
    pub fn new(fields: &'static [u32]) -> MessageAssembler {
        MessageAssembler {
            fields,
            state: State::Prefix {
                bytes: [0; 5],
                have: 0,
            },
        }
    }

    /// The stream offset of the first byte of a message still being collected: bytes
    /// from there on are not final.
    pub fn pinned_from(&self) -> Option<u64> {
        match &self.state {
            State::Body { spans, .. } => spans.first().map(|&(_, offset)| offset),
            _ => None,
        }
    }

    /// Takes DATA bytes of this stream direction found at stream `offset`.
    pub fn feed(
        &mut self,
        mut offset: u64,
        mut data: &[u8],
        out: &mut Vec<Overwrite>,
        counts: &mut MessageCounts,
    ) {
        while !data.is_empty() {
            match &mut self.state {
                State::Prefix { bytes, have } => {
                    let take = (5 - *have).min(data.len());
                    bytes[*have..*have + take].copy_from_slice(&data[..take]);
                    *have += take;
                    (offset, data) = (offset + take as u64, &data[take..]);
                    if *have < 5 {
                        continue;
                    }
                    let compressed = bytes[0] != 0;
                    let len = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
                    let len = usize::try_from(len).unwrap_or(usize::MAX);
                    self.state = if len == 0 {
                        State::Prefix {
                            bytes: [0; 5],
                            have: 0,
                        }
                    } else if compressed || len > MAX_AUTH_MESSAGE {
                        if compressed {
                            counts.compressed_blanked += 1;
                        } else {
                            counts.unparsable_blanked += 1;
                        }
                        State::Blank { left: len }
                    } else {
                        State::Body {
                            left: len,
                            body: Vec::with_capacity(len),
                            spans: Vec::new(),
                        }
                    };
                }
                State::Blank { left } => {
                    let take = (*left).min(data.len());
                    out.push(Overwrite { offset, len: take });
                    *left -= take;
                    (offset, data) = (offset + take as u64, &data[take..]);
                    if *left == 0 {
                        self.state = State::Prefix {
                            bytes: [0; 5],
                            have: 0,
                        };
                    }
                }
                State::Body { left, body, spans } => {
                    let take = (*left).min(data.len());
                    spans.push((body.len(), offset));
                    body.extend_from_slice(&data[..take]);
                    *left -= take;
                    (offset, data) = (offset + take as u64, &data[take..]);
                    if *left > 0 {
                        continue;
                    }
                    let ranges = match secret_field_values(body, self.fields) {
                        Some(ranges) => {
                            counts.fields_redacted += ranges.len() as u64;
                            ranges
                        }
                        None => {
                            counts.unparsable_blanked += 1;
                            std::iter::once(0..body.len()).collect()
                        }
                    };
                    for range in ranges {
                        map_to_stream(range, spans, body.len(), out);
                    }
                    self.state = State::Prefix {
                        bytes: [0; 5],
                        have: 0,
                    };
                }
            }
        }
    }
}

/// Splits a body range over the spans (body position, stream offset) it was gathered from.
fn map_to_stream(
    range: Range<usize>,
    spans: &[(usize, u64)],
    body_len: usize,
    out: &mut Vec<Overwrite>,
) {
    for (i, &(start, offset)) in spans.iter().enumerate() {
        let end = spans.get(i + 1).map_or(body_len, |&(next, _)| next);
        let (lo, hi) = (range.start.max(start), range.end.min(end));
        if lo < hi {
            out.push(Overwrite {
                offset: offset + (lo - start) as u64,
                len: hi - lo,
            });
        }
    }
}

/// The value ranges of the length-delimited top-level `fields` in a protobuf message;
/// None when the message is not valid protobuf wire format.
pub fn secret_field_values(message: &[u8], fields: &[u32]) -> Option<Vec<Range<usize>>> {
    let mut ranges = Vec::new();
    let mut pos = 0usize;
    while pos < message.len() {
        let tag = read_varint(message, &mut pos)?;
        let number = u32::try_from(tag >> 3).ok()?;
        match tag & 7 {
            0 => {
                read_varint(message, &mut pos)?;
            }
            1 => pos = pos.checked_add(8).filter(|&end| end <= message.len())?,
            5 => pos = pos.checked_add(4).filter(|&end| end <= message.len())?,
            2 => {
                let len = usize::try_from(read_varint(message, &mut pos)?).ok()?;
                let end = pos.checked_add(len).filter(|&end| end <= message.len())?;
                if fields.contains(&number) && len > 0 {
                    ranges.push(pos..end);
                }
                pos = end;
            }
            _ => return None,
        }
        if number == 0 {
            return None;
        }
    }
    Some(ranges)
}

fn read_varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut rest = bytes.get(*pos..)?;
    let before = rest.len();
    let value = prost::encoding::decode_varint(&mut rest).ok()?;
    *pos += before - rest.len();
    Some(value)
}
