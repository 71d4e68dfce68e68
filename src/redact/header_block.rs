//! Scrubbing one HPACK header block in place: the values of the auth-token headers are
//! overwritten with bytes of the same encoded length, and the block is then fed to the
//! direction's [`HpackDecoder`] field by field, so the dynamic table (ours and that of
//! every later reader of the capture) stores the redacted value with the size of the
//! original.
//!
//! The decoder resolves names but does not say where a value's bytes are, so this module
//! walks the field representations (RFC 7541 §6) itself to find those spans, and asks the
//! decoder's table only for the names of indexed literals.

use std::ops::Range;

use crate::decode::hpack::huffman::{self, CODES};
use crate::decode::hpack::integer::decode_integer;
use crate::decode::hpack::table::{static_entry, STATIC_TABLE_LEN};
use crate::decode::hpack::{FieldText, HpackDecoder};

/// Header names whose values are credentials: etcd's gRPC token, and the HTTP
/// `authorization` that etcd's gateway and some clients use for it.
const SECRET_HEADER_NAMES: [&[u8]; 2] = [b"token", b"authorization"];

/// What scrubbing a block found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ScrubbedBlock {
    /// The `:path` of a request block, when known.
    pub path: Option<Vec<u8>>,
    /// Byte ranges of the block that were overwritten.
    pub redacted: Vec<Range<usize>>,
    /// Values of fields with a known secret name.
    pub secret_values: u64,
    /// Values of fields whose name is unknown (mid-stream HPACK state) that looked like
    /// a token and were overwritten on suspicion.
    pub suspected_values: u64,
    /// The block could not be walked to its end: the rest from this offset was
    /// overwritten, since it may hold a token we could not find.
    pub unparsable_from: Option<usize>,
}

/// One field representation, located in the block.
struct Representation {
    end: usize,
    literal: Option<Literal>,
}

struct Literal {
    /// 0: the name is the literal string at `name`; otherwise a table index.
    name_index: u32,
    name: Range<usize>,
    name_huffman: bool,
    value: Range<usize>,
    value_huffman: bool,
}

/// Request header blocks that scrubbed clean and left the table as it was, kept per
/// direction: a client sends the same few blocks again and again (etcd's clients one
/// per method), and decoding each again, Huffman-coded `:path` included, was a tenth of
/// the recorder's writer. A block is the same again only while the table is: a literal
/// whose name indexes the dynamic table may name `token` after an insertion, so an
/// entry counts only at the table generation it was decoded at.
#[derive(Debug, Default)]
pub struct CleanBlocks {
    /// Oldest first, all of one generation.
    blocks: Vec<CleanBlock>,
}

#[derive(Debug)]
struct CleanBlock {
    bytes: Vec<u8>,
    generation: u64,
    path: Option<Vec<u8>>,
}

/// Blocks kept per direction: the methods a client uses at a time.
const CLEAN_BLOCKS_KEPT: usize = 8;
/// Longer blocks are decoded every time (they are rare, and costly to compare and keep).
const MAX_CLEAN_BLOCK_LEN: usize = 256;

impl CleanBlocks {
    /// [`scrub_header_block`], or what it gave for the same bytes at the same table
    /// generation: nothing redacted, the table unchanged, the same `:path`.
    pub fn scrub(&mut self, decoder: &mut HpackDecoder, block: &mut [u8]) -> ScrubbedBlock {
        let generation = decoder.table().generation();
        if let Some(seen) = self
            .blocks
            .iter()
            .rev()
            .find(|b| b.generation == generation && b.bytes == block)
        {
            return ScrubbedBlock {
                path: seen.path.clone(),
                ..ScrubbedBlock::default()
            };
        }
        let scrubbed = scrub_header_block(decoder, block);
        let clean = scrubbed.redacted.is_empty()
            && scrubbed.secret_values == 0
            && scrubbed.suspected_values == 0
            && scrubbed.unparsable_from.is_none();
        if clean && decoder.table().generation() == generation && block.len() <= MAX_CLEAN_BLOCK_LEN
        {
            self.blocks.retain(|b| b.generation == generation);
            if self.blocks.len() == CLEAN_BLOCKS_KEPT {
                self.blocks.remove(0);
            }
            self.blocks.push(CleanBlock {
                bytes: block.to_vec(),
                generation,
                path: scrubbed.path.clone(),
            });
        }
        scrubbed
    }

    #[cfg(test)]
    pub fn kept(&self) -> usize {
        self.blocks.len()
    }
}

/// Scrubs `block` (a complete header block) in place and advances `decoder` over it.
pub fn scrub_header_block(decoder: &mut HpackDecoder, block: &mut [u8]) -> ScrubbedBlock {
    let mut out = ScrubbedBlock::default();
    let mut pos = 0usize;
    let mut scratch = Vec::new();
    // Fields not yet given to the decoder: they are decoded in runs, each ending right
    // before a literal, because a literal's name may index what the run inserts. On a
    // long-lived connection most fields are indexed, so a block is one decode call.
    let mut run_start = 0usize;
    while pos < block.len() {
        let Some(rep) = locate(block, pos) else {
            decode_run(decoder, &block[run_start..pos], &mut out);
            // Truncated or malformed: whatever follows is unknown, and may be a token.
            let rest = pos..block.len();
            block[rest.clone()].fill(b'*');
            out.redacted.push(rest);
            out.unparsable_from = Some(pos);
            decoder.mark_desynced();
            return out;
        };
        if let Some(lit) = &rep.literal {
            decode_run(decoder, &block[run_start..pos], &mut out);
            run_start = pos;
            match literal_name(decoder, block, lit, &mut scratch) {
                NameIs::Secret => {
                    redact_value(block, lit, &mut scratch);
                    out.redacted.push(lit.value.clone());
                    out.secret_values += 1;
                }
                NameIs::Unknown if value_looks_like_token(block, lit, &mut scratch) => {
                    redact_value(block, lit, &mut scratch);
                    out.redacted.push(lit.value.clone());
                    out.suspected_values += 1;
                }
                NameIs::Other | NameIs::Unknown => {}
            }
        }
        pos = rep.end;
    }
    decode_run(decoder, &block[run_start..], &mut out);
    out
}

/// Give a run of whole fields (secrets already overwritten) to the decoder, so its table
/// holds what later blocks will index, and note the request's `:path`.
fn decode_run(decoder: &mut HpackDecoder, fields: &[u8], out: &mut ScrubbedBlock) {
    if fields.is_empty() {
        return;
    }
    // On error the decoder marks itself desynced: names it cannot resolve from then on
    // are unknown, and unknown names fall back to the token-shape rule.
    // The first `:path` field, its value when known.
    let mut path: Option<Option<Vec<u8>>> = None;
    let decoded = decoder.decode_each(fields, |field| {
        if path.is_none() && field.name.as_bytes() == Some(b":path") {
            path = Some(field.value.as_bytes().map(<[u8]>::to_vec));
        }
    });
    if let (Ok(()), Some(Some(path))) = (decoded, path) {
        out.path = Some(path);
    }
}

/// Finds the extent of the representation at `pos`, without any table.
fn locate(block: &[u8], pos: usize) -> Option<Representation> {
    let first = *block.get(pos)?;
    let (prefix_bits, literal) = if first & 0x80 != 0 {
        (7, false)
    } else if first & 0x40 != 0 {
        (6, true)
    } else if first & 0x20 != 0 {
        (5, false)
    } else {
        (4, true)
    };
    let (index, used) = decode_integer(block.get(pos..)?, prefix_bits).ok()?;
    let mut at = pos.checked_add(used)?;
    if !literal {
        return Some(Representation {
            end: at,
            literal: None,
        });
    }
    let (name, name_huffman) = if index == 0 {
        let (range, huffman) = locate_string(block, &mut at)?;
        (range, huffman)
    } else {
        (at..at, false)
    };
    let (value, value_huffman) = locate_string(block, &mut at)?;
    Some(Representation {
        end: at,
        literal: Some(Literal {
            name_index: index,
            name,
            name_huffman,
            value,
            value_huffman,
        }),
    })
}

/// The string literal (§5.2) at `*at`: its data range and whether it is Huffman-coded.
fn locate_string(block: &[u8], at: &mut usize) -> Option<(Range<usize>, bool)> {
    let huffman = block.get(*at)? & 0x80 != 0;
    let (len, used) = decode_integer(block.get(*at..)?, 7).ok()?;
    let start = at.checked_add(used)?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    if end > block.len() {
        return None;
    }
    *at = end;
    Some((start..end, huffman))
}

enum NameIs {
    Secret,
    Other,
    /// A dynamic-table entry this decoder never saw.
    Unknown,
}

fn literal_name(
    decoder: &HpackDecoder,
    block: &[u8],
    lit: &Literal,
    scratch: &mut Vec<u8>,
) -> NameIs {
    let classify = |name: &[u8]| {
        if SECRET_HEADER_NAMES
            .iter()
            .any(|secret| name.eq_ignore_ascii_case(secret))
        {
            NameIs::Secret
        } else {
            NameIs::Other
        }
    };
    if lit.name_index == 0 {
        if decode_string(block, lit.name.clone(), lit.name_huffman, scratch) {
            return classify(scratch);
        }
        // An undecodable literal name: the decoder will fail the block; treat the value
        // like one under an unknown name.
        return NameIs::Unknown;
    }
    if lit.name_index <= STATIC_TABLE_LEN {
        return static_entry(lit.name_index).map_or(NameIs::Unknown, |(name, _)| classify(name));
    }
    let slot = usize::try_from(lit.name_index - STATIC_TABLE_LEN - 1).unwrap_or(usize::MAX);
    match decoder.table().get(slot).map(|entry| &entry.name) {
        Some(FieldText::Known(name)) => classify(name),
        Some(FieldText::Unknown { .. }) | None => NameIs::Unknown,
    }
}

/// Decodes the string at `range` into `out`; false when it is not valid.
fn decode_string(block: &[u8], range: Range<usize>, huffman: bool, out: &mut Vec<u8>) -> bool {
    out.clear();
    let Some(data) = block.get(range) else {
        return false;
    };
    if huffman {
        huffman::decode(data, out).is_ok()
    } else {
        out.extend_from_slice(data);
        true
    }
}

/// Whether a value under an unknown name has the shape of an etcd token. We chose to
/// blank such values: after a gap a token header is sent as a literal whose name refers
/// to a table entry we never saw, and a false positive only costs one header value of
/// some other request, while a miss leaks a credential. Shapes: etcd's simple token
/// (16 letters, a dot, the raft index) and a JWT (`eyJ`, three dot-separated parts).
fn value_looks_like_token(block: &[u8], lit: &Literal, scratch: &mut Vec<u8>) -> bool {
    if !decode_string(block, lit.value.clone(), lit.value_huffman, scratch) {
        return false;
    }
    looks_like_token(scratch)
}

pub(crate) fn looks_like_token(value: &[u8]) -> bool {
    let simple = || {
        let Some(dot) = value.iter().position(|&b| b == b'.') else {
            return false;
        };
        let (prefix, index) = (&value[..dot], &value[dot + 1..]);
        prefix.len() == 16
            && prefix.iter().all(u8::is_ascii_alphabetic)
            && !index.is_empty()
            && index.iter().all(u8::is_ascii_digit)
    };
    let jwt = || {
        value.starts_with(b"eyJ")
            && value.iter().filter(|&&b| b == b'.').count() == 2
            && value
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'='))
    };
    simple() || jwt()
}

/// Overwrites a literal's value bytes: raw → `*`; Huffman → [`huffman_filler`].
fn redact_value(block: &mut [u8], lit: &Literal, scratch: &mut Vec<u8>) {
    let decoded_len = if lit.value_huffman && decode_string(block, lit.value.clone(), true, scratch)
    {
        Some(scratch.len())
    } else {
        None
    };
    let Some(value) = block.get_mut(lit.value.clone()) else {
        return;
    };
    match (lit.value_huffman, decoded_len) {
        (false, _) => value.fill(b'*'),
        (true, decoded_len) => {
            let filler = decoded_len
                .and_then(|len| huffman_filler(value.len(), len))
                .unwrap_or_else(|| huffman_zeros(value.len()));
            value.copy_from_slice(&filler);
        }
    }
}

/// A valid Huffman string of exactly `encoded_len` bytes that decodes to exactly
/// `decoded_len` symbols, when one exists. The decoded length matters as much as the
/// encoded one: HPACK counts an entry's size on the decoded value, so a different length
/// would make every later reader evict table entries at other moments than the encoder
/// did. Symbols are picked by code length (5 bits: `0` ... 8 bits: `*`, longer codes only
/// when the original used them).
pub(crate) fn huffman_filler(encoded_len: usize, decoded_len: usize) -> Option<Vec<u8>> {
    let max_bits = encoded_len.checked_mul(8)?;
    let min_bits = max_bits.saturating_sub(7);
    if decoded_len == 0 {
        // Only padding: fewer than 8 bits of it, so only the empty string.
        return (encoded_len == 0).then(Vec::new);
    }
    // Total code bits T with min_bits <= T <= max_bits; the symbols share T evenly.
    for total in min_bits.max(5 * decoded_len)..=max_bits {
        let (each, extra) = (total / decoded_len, total % decoded_len);
        let (Some(short), long) = (symbol_of_len(each), symbol_of_len(each + 1)) else {
            continue;
        };
        if extra > 0 && long.is_none() {
            continue;
        }
        let mut writer = BitWriter::with_capacity(encoded_len);
        for i in 0..decoded_len {
            let symbol = if i < extra {
                long.unwrap_or(short)
            } else {
                short
            };
            writer.push(symbol);
        }
        return Some(writer.finish());
    }
    None
}

/// The fallback the decoded length cannot be kept for: floor(8n/5) `0`s (code 00000),
/// padded with 1 bits.
pub(crate) fn huffman_zeros(encoded_len: usize) -> Vec<u8> {
    let mut writer = BitWriter::with_capacity(encoded_len);
    let zero = symbol_of_len(5).unwrap_or((0, 5));
    for _ in 0..encoded_len.saturating_mul(8) / 5 {
        writer.push(zero);
    }
    writer.finish()
}

/// A Huffman code (right-aligned bits, length) of exactly `len` bits, preferring
/// symbols that read as redaction: `0` (5 bits), `-` (6), `:` (7), `*` (8).
fn symbol_of_len(len: usize) -> Option<(u32, u8)> {
    const PREFERRED: [u8; 4] = [b'0', b'-', b':', b'*'];
    PREFERRED
        .iter()
        .map(|&b| CODES[usize::from(b)])
        .chain(CODES.iter().take(256).copied())
        .find(|&(_, bits)| usize::from(bits) == len)
}

struct BitWriter {
    out: Vec<u8>,
    acc: u64,
    bits: u32,
}

impl BitWriter {
    fn with_capacity(n: usize) -> BitWriter {
        BitWriter {
            out: Vec::with_capacity(n),
            acc: 0,
            bits: 0,
        }
    }

    fn push(&mut self, (code, len): (u32, u8)) {
        self.acc = (self.acc << len) | u64::from(code);
        self.bits += u32::from(len);
        while self.bits >= 8 {
            self.bits -= 8;
            self.out.push((self.acc >> self.bits) as u8);
        }
        self.acc &= (1u64 << self.bits) - 1;
    }

    /// Pads with 1 bits (a prefix of EOS, RFC 7541 §5.2).
    fn finish(mut self) -> Vec<u8> {
        if self.bits > 0 {
            let pad = 8 - self.bits;
            self.out
                .push(((self.acc << pad) | ((1u64 << pad) - 1)) as u8);
        }
        self.out
    }
}
