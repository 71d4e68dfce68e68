//! The HPACK header-block decoder (RFC 7541 §6), passive flavour: one per connection
//! direction, fed every header block (HEADERS plus CONTINUATION payloads, concatenated)
//! in order.
//!
//! Unlike an endpoint it must carry on when it cannot know everything. A reference to a
//! dynamic entry it never saw yields a field marked [`FieldText::Unknown`] and a block
//! marked `uncertain`; it never fails the block and never guesses.
//!
//! ## Table states and the rule after a gap
//!
//! - [`TableState::Synced`]: every entry of the encoder's table is known. Created by
//!   [`HpackDecoder::new`] for a connection seen from its preface.
//! - [`TableState::Unknown`]: created by [`HpackDecoder::new_midstream`]. Entries inserted
//!   since are known; they are the newest, so they sit at the lowest indices (62 up).
//!   Any index past them is unknown.
//! - [`TableState::Desynced`]: after [`HpackDecoder::mark_desynced`] (the caller lost a
//!   header block) or a failed block. A lost block may have inserted any number of
//!   entries in front of ours, shifting every old entry by an unknown amount, and may have
//!   changed the table size. So the rule is: everything known before the gap is dropped
//!   and treated as "unseen older"; entries inserted after the gap are known, counted from
//!   the newest, exactly as in the `Unknown` state.
//!
//! Both non-synced states return to `Synced` once the unseen entries are provably evicted:
//! a size update small enough, or insertions large enough, that not even one 32-byte
//! unseen entry could remain (see [`DynamicTable`]).
//!
//! In the `Synced` state an index past the known entries (but within what the table could
//! hold) is evidence of an undetected gap: the field is `Unknown`, the block `uncertain`,
//! and the decoder becomes `Desynced` at once.
//!
//! Deviation from a strict endpoint: a dynamic table size update is honoured anywhere in a
//! block, not only at its start (RFC 7541 §4.2 makes that an error; being lenient loses
//! nothing here).

use std::borrow::Cow;

use bytes::Bytes;

use super::huffman::{self, HuffmanError};
use super::integer::{decode_integer, IntegerError};
use super::table::{static_entry, DynamicEntry, DynamicTable, ENTRY_OVERHEAD, STATIC_TABLE_LEN};

/// Default bound on one decoded header list (RFC 9113 §6.5.2 sizes: name + value + 32
/// per field). An indexed field of one byte can expand to a whole table entry, so without
/// a bound a block could decode to gigabytes.
pub const DEFAULT_MAX_HEADER_LIST_SIZE: usize = 1 << 20;

/// A header name or value: its bytes, or the index of a dynamic entry we never saw.
/// The bytes are shared (`Bytes`): a field taken from a table refers to the entry
/// rather than copying it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FieldText {
    Known(Bytes),
    /// Taken from dynamic-table `index` (numbered as in the field that referenced it),
    /// whose content this decoder does not know.
    Unknown {
        index: u32,
    },
}

impl FieldText {
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            FieldText::Known(bytes) => Some(bytes.as_ref()),
            FieldText::Unknown { .. } => None,
        }
    }

    pub fn is_known(&self) -> bool {
        matches!(self, FieldText::Known(_))
    }

    /// The text, invalid UTF-8 replaced; an unknown text reads `<unknown hpack index N>`.
    pub fn to_str_lossy(&self) -> Cow<'_, str> {
        match self {
            FieldText::Known(bytes) => String::from_utf8_lossy(bytes),
            FieldText::Unknown { index } => Cow::Owned(format!("<unknown hpack index {index}>")),
        }
    }

    fn len(&self) -> usize {
        self.as_bytes().map_or(0, <[u8]>::len)
    }
}

/// How the encoder represented a field (RFC 7541 §6), which also says what it did to the
/// dynamic table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Indexing {
    /// The whole field came from a table (§6.1).
    Indexed,
    /// A literal added to the dynamic table (§6.2.1).
    Incremental,
    /// A literal not added (§6.2.2).
    WithoutIndexing,
    /// A literal that intermediaries must never index: often a secret (§6.2.3).
    NeverIndexed,
}

/// Where a field's name (and, for [`Indexing::Indexed`], its value) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldSource {
    /// Static table entry `index` (1..=61).
    StaticTable { index: u32 },
    /// Dynamic table entry `index` (62 up), as numbered when the field was decoded.
    DynamicTable { index: u32 },
    /// The name was a literal string.
    LiteralName,
}

/// One decoded header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderField {
    pub name: FieldText,
    pub value: FieldText,
    pub indexing: Indexing,
    pub source: FieldSource,
}

impl HeaderField {
    pub fn name_str(&self) -> Cow<'_, str> {
        self.name.to_str_lossy()
    }

    pub fn value_str(&self) -> Cow<'_, str> {
        self.value.to_str_lossy()
    }

    /// Whether name and value are both known.
    pub fn is_known(&self) -> bool {
        self.name.is_known() && self.value.is_known()
    }
}

/// The fields of one header block, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeaderBlock {
    pub fields: Vec<HeaderField>,
    /// Some field has an unknown name or value.
    pub uncertain: bool,
}

impl HeaderBlock {
    /// The first field named `name`, if its value is known.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|field| field.name.as_bytes() == Some(name))
            .and_then(|field| field.value.as_bytes())
    }
}

/// How well the decoder knows the encoder's dynamic table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableState {
    /// Every entry is known.
    Synced,
    /// Started mid-connection: entries older than those seen since are unknown.
    Unknown,
    /// A header block was lost or failed: entries from before it are unknown.
    Desynced,
}

/// Why a header block could not be decoded. `offset` is where, in the block, the field
/// representation that failed starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("index 0 at offset {offset} (not a valid HPACK index)")]
    IndexZero { offset: usize },
    #[error("index {index} at offset {offset} is beyond any possible table (largest {max})")]
    IndexOutOfRange { index: u32, max: u32, offset: usize },
    #[error("integer at offset {offset} exceeds 2^32 - 1")]
    IntegerOverflow { offset: usize },
    #[error("header block ends inside {what} at offset {offset}")]
    Truncated { what: &'static str, offset: usize },
    #[error("Huffman string at offset {offset}: {source}")]
    Huffman {
        offset: usize,
        #[source]
        source: HuffmanError,
    },
    #[error("string of {length} bytes at offset {offset} with only {remaining} bytes left")]
    StringTooLong {
        length: u32,
        remaining: usize,
        offset: usize,
    },
    #[error(
        "dynamic table size update to {requested} at offset {offset} exceeds the maximum {max}"
    )]
    TableSizeUpdateTooLarge {
        requested: u32,
        max: u32,
        offset: usize,
    },
    /// The block was decoded to the end (so the table stays in step) but its fields were
    /// dropped.
    #[error("decoded header list exceeds {limit} bytes")]
    HeaderListTooLarge { limit: usize },
}

impl HpackError {
    /// Whether the decoder's table is still in step with the encoder after this error.
    pub fn leaves_table_in_step(&self) -> bool {
        matches!(self, HpackError::HeaderListTooLarge { .. })
    }
}

/// Decodes the header blocks of one direction of one HTTP/2 connection.
#[derive(Debug, Clone)]
pub struct HpackDecoder {
    table: DynamicTable,
    /// The state reported while the table may miss older entries.
    gap_state: TableState,
    max_header_list_size: usize,
}

/// What an index refers to.
enum Lookup {
    Static(&'static [u8], &'static [u8]),
    Dynamic(usize),
    Unknown,
}

impl HpackDecoder {
    /// A decoder for a connection seen from its start; `max_table_size` is the decoding
    /// side's SETTINGS_HEADER_TABLE_SIZE (4096 unless it said otherwise).
    pub fn new(max_table_size: u32) -> Self {
        Self {
            table: DynamicTable::new_synced(max_table_size),
            gap_state: TableState::Unknown,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
        }
    }

    /// A decoder joining a connection already running. `max_table_size` must be an upper
    /// bound of the decoding side's SETTINGS_HEADER_TABLE_SIZE: indices beyond what such a
    /// table could hold are errors.
    pub fn new_midstream(max_table_size: u32) -> Self {
        Self {
            table: DynamicTable::new_midstream(max_table_size),
            gap_state: TableState::Unknown,
            max_header_list_size: DEFAULT_MAX_HEADER_LIST_SIZE,
        }
    }

    /// Applies the decoding side's SETTINGS_HEADER_TABLE_SIZE; call it when the encoder
    /// acknowledged the SETTINGS frame (that is when the value takes effect).
    pub fn set_max_table_size(&mut self, max_table_size: u32) {
        self.table.set_max_allowed(max_table_size);
    }

    pub fn max_table_size(&self) -> u32 {
        self.table.max_allowed()
    }

    /// Bounds the decoded size of one header list (name + value + 32 per field).
    pub fn set_max_header_list_size(&mut self, limit: usize) {
        self.max_header_list_size = limit;
    }

    pub fn table_state(&self) -> TableState {
        if self.table.has_unseen_older() {
            self.gap_state
        } else {
            TableState::Synced
        }
    }

    pub fn table(&self) -> &DynamicTable {
        &self.table
    }

    /// Tells the decoder a header block of this direction was lost: see the module doc.
    pub fn mark_desynced(&mut self) {
        self.table.forget_all();
        self.gap_state = TableState::Desynced;
    }

    /// Decodes one complete header block. On error the decoder marks itself desynced
    /// (except for [`HpackError::HeaderListTooLarge`], which decodes the block to the end).
    pub fn decode(&mut self, block: &[u8]) -> Result<HeaderBlock, HpackError> {
        let limit = self.max_header_list_size;
        let mut out = HeaderBlock::default();
        let mut list_size: usize = 0;
        let mut over_limit = false;
        self.decode_each(block, |field| {
            out.uncertain |= !field.is_known();
            if over_limit {
                return;
            }
            list_size = list_size
                .saturating_add(field.name.len())
                .saturating_add(field.value.len())
                .saturating_add(ENTRY_OVERHEAD);
            if list_size > limit {
                over_limit = true;
                out.fields = Vec::new();
            } else {
                out.fields.push(field);
            }
        })?;
        if over_limit {
            return Err(HpackError::HeaderListTooLarge { limit });
        }
        Ok(out)
    }

    /// Decodes one complete header block like [`HpackDecoder::decode`], handing each
    /// field to `each` instead of collecting them (no bound on the list's size then:
    /// nothing accumulates here). For callers that look for one field, such as the
    /// recorder's redaction, which runs for every request.
    pub fn decode_each(
        &mut self,
        block: &[u8],
        each: impl FnMut(HeaderField),
    ) -> Result<(), HpackError> {
        let result = self.decode_fields(block, each);
        if let Err(error) = &result {
            if !error.leaves_table_in_step() {
                self.mark_desynced();
            }
        }
        result
    }

    fn decode_fields(
        &mut self,
        block: &[u8],
        mut each: impl FnMut(HeaderField),
    ) -> Result<(), HpackError> {
        let mut pos = 0usize;
        while let Some(&first) = block.get(pos) {
            let offset = pos;
            let field = if first & 0x80 != 0 {
                // §6.1 indexed field.
                let index = read_integer(block, &mut pos, 7, "an index")?;
                let (name, value, source) = match self.lookup(index, offset)? {
                    Lookup::Static(name, value) => (
                        FieldText::Known(Bytes::from_static(name)),
                        FieldText::Known(Bytes::from_static(value)),
                        FieldSource::StaticTable { index },
                    ),
                    Lookup::Dynamic(slot) => (
                        self.dynamic_name(slot, index),
                        self.table
                            .get(slot)
                            .map_or(FieldText::Unknown { index }, |entry| {
                                FieldText::Known(entry.value.clone())
                            }),
                        FieldSource::DynamicTable { index },
                    ),
                    Lookup::Unknown => (
                        FieldText::Unknown { index },
                        FieldText::Unknown { index },
                        FieldSource::DynamicTable { index },
                    ),
                };
                HeaderField {
                    name,
                    value,
                    indexing: Indexing::Indexed,
                    source,
                }
            } else if first & 0x40 != 0 {
                // §6.2.1 literal with incremental indexing.
                let field = self.read_literal(block, &mut pos, 6, Indexing::Incremental)?;
                if let FieldText::Known(value) = &field.value {
                    self.table.insert(DynamicEntry {
                        name: field.name.clone(),
                        value: value.clone(),
                    });
                }
                field
            } else if first & 0x20 != 0 {
                // §6.3 dynamic table size update.
                let requested = read_integer(block, &mut pos, 5, "a table size update")?;
                let max = self.table.max_allowed();
                if requested > max {
                    return Err(HpackError::TableSizeUpdateTooLarge {
                        requested,
                        max,
                        offset,
                    });
                }
                self.table.update_capacity(requested);
                continue;
            } else {
                // §6.2.2 without indexing / §6.2.3 never indexed.
                let indexing = if first & 0x10 != 0 {
                    Indexing::NeverIndexed
                } else {
                    Indexing::WithoutIndexing
                };
                self.read_literal(block, &mut pos, 4, indexing)?
            };
            each(field);
        }
        Ok(())
    }

    /// Resolves a table index (§2.3.3).
    fn lookup(&mut self, index: u32, offset: usize) -> Result<Lookup, HpackError> {
        if index == 0 {
            return Err(HpackError::IndexZero { offset });
        }
        if index <= STATIC_TABLE_LEN {
            return match static_entry(index) {
                Some((name, value)) => Ok(Lookup::Static(name, value)),
                None => Err(HpackError::IndexZero { offset }),
            };
        }
        let slot = usize::try_from(index - STATIC_TABLE_LEN - 1).unwrap_or(usize::MAX);
        if self.table.get(slot).is_some() {
            return Ok(Lookup::Dynamic(slot));
        }
        let max = STATIC_TABLE_LEN.saturating_add(self.table.max_possible_entries());
        if index > max {
            return Err(HpackError::IndexOutOfRange { index, max, offset });
        }
        if !self.table.has_unseen_older() {
            // We thought we knew the whole table: a block must have been lost unnoticed.
            self.mark_desynced();
        }
        Ok(Lookup::Unknown)
    }

    /// The name of the known dynamic entry at `slot`, referenced as `index`. A name the
    /// entry itself never knew is reported under the index used now.
    fn dynamic_name(&self, slot: usize, index: u32) -> FieldText {
        match self.table.get(slot).map(|entry| &entry.name) {
            Some(FieldText::Known(name)) => FieldText::Known(name.clone()),
            Some(FieldText::Unknown { .. }) | None => FieldText::Unknown { index },
        }
    }

    /// A literal field representation (§6.2) whose name index has `prefix_bits` bits.
    fn read_literal(
        &mut self,
        block: &[u8],
        pos: &mut usize,
        prefix_bits: u8,
        indexing: Indexing,
    ) -> Result<HeaderField, HpackError> {
        let offset = *pos;
        let name_index = read_integer(block, pos, prefix_bits, "a name index")?;
        let (name, source) = if name_index == 0 {
            let name = read_string(block, pos, offset, "a name")?;
            (
                FieldText::Known(Bytes::from(name)),
                FieldSource::LiteralName,
            )
        } else {
            match self.lookup(name_index, offset)? {
                Lookup::Static(name, _) => (
                    FieldText::Known(Bytes::from_static(name)),
                    FieldSource::StaticTable { index: name_index },
                ),
                Lookup::Dynamic(slot) => (
                    self.dynamic_name(slot, name_index),
                    FieldSource::DynamicTable { index: name_index },
                ),
                Lookup::Unknown => (
                    FieldText::Unknown { index: name_index },
                    FieldSource::DynamicTable { index: name_index },
                ),
            }
        };
        let value = read_string(block, pos, offset, "a value")?;
        Ok(HeaderField {
            name,
            value: FieldText::Known(Bytes::from(value)),
            indexing,
            source,
        })
    }
}

/// Reads a prefix integer at `*pos` and advances past it.
fn read_integer(
    block: &[u8],
    pos: &mut usize,
    prefix_bits: u8,
    what: &'static str,
) -> Result<u32, HpackError> {
    let offset = *pos;
    let rest = block.get(offset..).unwrap_or_default();
    match decode_integer(rest, prefix_bits) {
        Ok((value, used)) => {
            *pos = offset.saturating_add(used);
            Ok(value)
        }
        Err(IntegerError::Truncated) => Err(HpackError::Truncated { what, offset }),
        Err(IntegerError::Overflow) => Err(HpackError::IntegerOverflow { offset }),
    }
}

/// Reads a string literal (§5.2) at `*pos`; `offset` is where its field starts.
fn read_string(
    block: &[u8],
    pos: &mut usize,
    offset: usize,
    what: &'static str,
) -> Result<Vec<u8>, HpackError> {
    let huffman_coded = match block.get(*pos) {
        Some(first) => first & 0x80 != 0,
        None => return Err(HpackError::Truncated { what, offset }),
    };
    let length = read_integer(block, pos, 7, what)?;
    let rest = block.get(*pos..).unwrap_or_default();
    // Check the length against the input before anything is allocated from it.
    let data = usize::try_from(length)
        .ok()
        .and_then(|len| rest.get(..len))
        .ok_or(HpackError::StringTooLong {
            length,
            remaining: rest.len(),
            offset,
        })?;
    *pos = pos.saturating_add(data.len());
    if huffman_coded {
        let mut out = Vec::new();
        huffman::decode(data, &mut out).map_err(|source| HpackError::Huffman { offset, source })?;
        Ok(out)
    } else {
        Ok(data.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::super::huffman::tests::huffman_encode;
    use super::super::integer::tests::encode_integer;
    use super::*;

    /// Bytes from the RFC's hex dumps (whitespace ignored).
    fn hex(text: &str) -> Vec<u8> {
        let digits: Vec<u8> = text.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    fn known(block: &HeaderBlock) -> Vec<(String, String)> {
        assert!(!block.uncertain);
        block
            .fields
            .iter()
            .map(|f| (f.name_str().into_owned(), f.value_str().into_owned()))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn table(decoder: &HpackDecoder) -> Vec<(String, String)> {
        decoder
            .table()
            .iter()
            .map(|e| {
                (
                    e.name.to_str_lossy().into_owned(),
                    String::from_utf8_lossy(&e.value).into_owned(),
                )
            })
            .collect()
    }

    /// A string literal as our test encoder writes it.
    fn string(text: &[u8], huffman: bool) -> Vec<u8> {
        if huffman {
            let coded = huffman_encode(text);
            let mut out = encode_integer(coded.len() as u32, 7, 0x80);
            out.extend_from_slice(&coded);
            out
        } else {
            let mut out = encode_integer(text.len() as u32, 7, 0);
            out.extend_from_slice(text);
            out
        }
    }

    #[test]
    fn c2_literal_field_representations() {
        // C.2.1 literal with indexing.
        let mut d = HpackDecoder::new(4096);
        let block = d
            .decode(&hex(
                "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
            ))
            .unwrap();
        assert_eq!(known(&block), pairs(&[("custom-key", "custom-header")]));
        assert_eq!(block.fields[0].indexing, Indexing::Incremental);
        assert_eq!(block.fields[0].source, FieldSource::LiteralName);
        assert_eq!(table(&d), pairs(&[("custom-key", "custom-header")]));
        assert_eq!(d.table().size(), 55);

        // C.2.2 literal without indexing.
        let mut d = HpackDecoder::new(4096);
        let block = d
            .decode(&hex("040c 2f73 616d 706c 652f 7061 7468"))
            .unwrap();
        assert_eq!(known(&block), pairs(&[(":path", "/sample/path")]));
        assert_eq!(block.fields[0].indexing, Indexing::WithoutIndexing);
        assert_eq!(
            block.fields[0].source,
            FieldSource::StaticTable { index: 4 }
        );
        assert!(d.table().is_empty());

        // C.2.3 literal never indexed.
        let mut d = HpackDecoder::new(4096);
        let block = d
            .decode(&hex("1008 7061 7373 776f 7264 0673 6563 7265 74"))
            .unwrap();
        assert_eq!(known(&block), pairs(&[("password", "secret")]));
        assert_eq!(block.fields[0].indexing, Indexing::NeverIndexed);
        assert!(d.table().is_empty());

        // C.2.4 indexed field.
        let mut d = HpackDecoder::new(4096);
        let block = d.decode(&hex("82")).unwrap();
        assert_eq!(known(&block), pairs(&[(":method", "GET")]));
        assert_eq!(block.fields[0].indexing, Indexing::Indexed);
        assert!(d.table().is_empty());
    }

    fn check_requests(blocks: [&str; 3]) {
        let mut d = HpackDecoder::new(4096);
        let first = d.decode(&hex(blocks[0])).unwrap();
        assert_eq!(
            known(&first),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
            ])
        );
        assert_eq!(table(&d), pairs(&[(":authority", "www.example.com")]));
        assert_eq!(d.table().size(), 57);

        let second = d.decode(&hex(blocks[1])).unwrap();
        assert_eq!(
            known(&second),
            pairs(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ])
        );
        assert_eq!(
            second.fields[3].source,
            FieldSource::DynamicTable { index: 62 }
        );
        assert_eq!(
            table(&d),
            pairs(&[
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ])
        );
        assert_eq!(d.table().size(), 110);

        let third = d.decode(&hex(blocks[2])).unwrap();
        assert_eq!(
            known(&third),
            pairs(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ])
        );
        assert_eq!(
            table(&d),
            pairs(&[
                ("custom-key", "custom-value"),
                ("cache-control", "no-cache"),
                (":authority", "www.example.com"),
            ])
        );
        assert_eq!(d.table().size(), 164);
        assert_eq!(d.table_state(), TableState::Synced);
    }

    const C3: [&str; 3] = [
        "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
        "8286 84be 5808 6e6f 2d63 6163 6865",
        "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
    ];

    #[test]
    fn c3_requests_without_huffman() {
        check_requests(C3);
    }

    #[test]
    fn c4_requests_with_huffman() {
        check_requests([
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ]);
    }

    const DATE_21: &str = "Mon, 21 Oct 2013 20:13:21 GMT";
    const DATE_22: &str = "Mon, 21 Oct 2013 20:13:22 GMT";
    const LOCATION: &str = "https://www.example.com";
    const COOKIE: &str = "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1";

    fn check_responses(blocks: [&str; 3]) {
        let mut d = HpackDecoder::new(256);
        let first = d.decode(&hex(blocks[0])).unwrap();
        assert_eq!(
            known(&first),
            pairs(&[
                (":status", "302"),
                ("cache-control", "private"),
                ("date", DATE_21),
                ("location", LOCATION),
            ])
        );
        assert_eq!(
            table(&d),
            pairs(&[
                ("location", LOCATION),
                ("date", DATE_21),
                ("cache-control", "private"),
                (":status", "302"),
            ])
        );
        assert_eq!(d.table().size(), 222);

        let second = d.decode(&hex(blocks[1])).unwrap();
        assert_eq!(
            known(&second),
            pairs(&[
                (":status", "307"),
                ("cache-control", "private"),
                ("date", DATE_21),
                ("location", LOCATION),
            ])
        );
        assert_eq!(
            table(&d),
            pairs(&[
                (":status", "307"),
                ("location", LOCATION),
                ("date", DATE_21),
                ("cache-control", "private"),
            ])
        );
        assert_eq!(d.table().size(), 222);

        let third = d.decode(&hex(blocks[2])).unwrap();
        assert_eq!(
            known(&third),
            pairs(&[
                (":status", "200"),
                ("cache-control", "private"),
                ("date", DATE_22),
                ("location", LOCATION),
                ("content-encoding", "gzip"),
                ("set-cookie", COOKIE),
            ])
        );
        assert_eq!(
            table(&d),
            pairs(&[
                ("set-cookie", COOKIE),
                ("content-encoding", "gzip"),
                ("date", DATE_22),
            ])
        );
        assert_eq!(d.table().size(), 215);
        assert_eq!(d.table_state(), TableState::Synced);
    }

    #[test]
    fn c5_responses_without_huffman() {
        check_responses([
            "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
             2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
             6c65 2e63 6f6d",
            "4803 3330 37c1 c0bf",
            "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
             54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
             5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
             3d31",
        ]);
    }

    #[test]
    fn c6_responses_with_huffman() {
        check_responses([
            "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
             2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
            "4883 640e ffc1 c0bf",
            "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
             77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
             9587 3160 65c0 03ed 4ee5 b106 3d50 07",
        ]);
    }

    #[test]
    fn midstream_decoder_marks_unseen_dynamic_entries() {
        let mut d = HpackDecoder::new_midstream(4096);
        assert_eq!(d.table_state(), TableState::Unknown);
        let block = d.decode(&hex(C3[2])).unwrap();
        assert!(block.uncertain);
        let f = &block.fields;
        assert_eq!(f.len(), 5);
        assert_eq!(f[0].name_str(), ":method");
        assert_eq!(f[0].value_str(), "GET");
        assert_eq!(f[1].value_str(), "https");
        assert_eq!(f[2].value_str(), "/index.html");
        assert_eq!(f[3].name, FieldText::Unknown { index: 63 });
        assert_eq!(f[3].value, FieldText::Unknown { index: 63 });
        assert_eq!(f[3].source, FieldSource::DynamicTable { index: 63 });
        assert_eq!(f[3].value_str(), "<unknown hpack index 63>");
        assert_eq!(f[4].name_str(), "custom-key");
        assert_eq!(f[4].value_str(), "custom-value");
        assert!(f.iter().enumerate().all(|(i, x)| x.is_known() == (i != 3)));
        assert_eq!(block.get(b":path"), Some(&b"/index.html"[..]));
        // The literal went into the table at index 62; older ones stay unknown.
        assert_eq!(table(&d), pairs(&[("custom-key", "custom-value")]));
        assert_eq!(d.table_state(), TableState::Unknown);
        let next = d.decode(&[0xbe, 0xbf]).unwrap();
        assert!(next.uncertain);
        assert_eq!(next.fields[0].value_str(), "custom-value");
        assert!(!next.fields[1].is_known());
    }

    #[test]
    fn unknown_name_is_inserted_to_keep_indices_aligned() {
        let mut d = HpackDecoder::new_midstream(4096);
        // Literal with incremental indexing, name index 70 (unknown), value "abc".
        let block = d.decode(&[0x7f, 0x07, 0x03, b'a', b'b', b'c']).unwrap();
        assert!(block.uncertain);
        assert_eq!(block.fields[0].name, FieldText::Unknown { index: 70 });
        assert_eq!(block.fields[0].value_str(), "abc");
        // A second insertion, then both are resolvable by position.
        let block = d.decode(&hex("4003 6b65 7901 76")).unwrap();
        assert_eq!(known(&block), pairs(&[("key", "v")]));
        let block = d.decode(&[0xbe, 0xbf]).unwrap();
        assert!(block.uncertain);
        assert_eq!(block.fields[0].name_str(), "key");
        assert_eq!(block.fields[1].name, FieldText::Unknown { index: 63 });
        assert_eq!(block.fields[1].value_str(), "abc");
    }

    #[test]
    fn midstream_decoder_syncs_after_a_size_update() {
        let mut d = HpackDecoder::new_midstream(4096);
        // Size update to 0 empties the table, then to 4096 again.
        d.decode(&[0x20, 0x3f, 0xe1, 0x1f, 0x82]).unwrap();
        assert_eq!(d.table_state(), TableState::Synced);
        assert_eq!(d.table().capacity(), Some(4096));
        // Now an index past the table is evidence of a lost block.
        let block = d.decode(&[0xbe]).unwrap();
        assert!(block.uncertain);
        assert_eq!(d.table_state(), TableState::Desynced);
    }

    #[test]
    fn desync_forgets_entries_from_before_the_gap() {
        let mut d = HpackDecoder::new(4096);
        d.decode(&hex(C3[0])).unwrap();
        d.decode(&hex(C3[1])).unwrap();
        d.mark_desynced();
        assert_eq!(d.table_state(), TableState::Desynced);
        assert!(d.table().is_empty());
        let block = d.decode(&hex(C3[2])).unwrap();
        assert!(block.uncertain);
        assert_eq!(block.fields[3].name, FieldText::Unknown { index: 63 });
        assert_eq!(table(&d), pairs(&[("custom-key", "custom-value")]));
        // A large insertion proves every older entry evicted: synced again.
        let mut big = vec![0x40];
        big.extend(string(b"x-big", false));
        big.extend(string(&[b'v'; 4000], false));
        d.decode(&big).unwrap();
        assert_eq!(d.table_state(), TableState::Synced);
        assert_eq!(d.table().len(), 2);
        let block = d.decode(&[0xbe, 0xbf]).unwrap();
        assert!(!block.uncertain);
        assert_eq!(block.fields[1].value_str(), "custom-value");
    }

    #[test]
    fn errors_are_reported_and_desynchronise() {
        fn err(block: &[u8]) -> HpackError {
            let mut d = HpackDecoder::new(4096);
            let error = d.decode(block).unwrap_err();
            assert_eq!(d.table_state(), TableState::Desynced);
            error
        }
        assert_eq!(err(&[0x82, 0x80]), HpackError::IndexZero { offset: 1 });
        // Index 190 exceeds 61 + 4096/32 = 189.
        assert_eq!(
            err(&[0xff, 0x3f]),
            HpackError::IndexOutOfRange {
                index: 190,
                max: 189,
                offset: 0
            }
        );
        assert_eq!(
            err(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x0f]),
            HpackError::IntegerOverflow { offset: 0 }
        );
        assert_eq!(
            err(&[0x82, 0xff]),
            HpackError::Truncated {
                what: "an index",
                offset: 1
            }
        );
        assert_eq!(
            err(&[0x40, 0x0a, b'a']),
            HpackError::StringTooLong {
                length: 10,
                remaining: 1,
                offset: 0
            }
        );
        assert_eq!(
            err(&[0x04]),
            HpackError::Truncated {
                what: "a value",
                offset: 0
            }
        );
        // A length near 2^32 must not be allocated.
        assert_eq!(
            err(&[0x04, 0x7f, 0x80, 0xff, 0xff, 0xff, 0x0f]),
            HpackError::StringTooLong {
                length: u32::MAX,
                remaining: 0,
                offset: 0
            }
        );
        assert_eq!(
            err(&[0x04, 0x81, 0xff]),
            HpackError::Huffman {
                offset: 0,
                source: HuffmanError::PaddingTooLong
            }
        );
        // Size update to 4097 with a maximum of 4096.
        assert_eq!(
            err(&[0x3f, 0xe2, 0x1f]),
            HpackError::TableSizeUpdateTooLarge {
                requested: 4097,
                max: 4096,
                offset: 0
            }
        );
    }

    #[test]
    fn settings_bound_size_updates() {
        let mut d = HpackDecoder::new(4096);
        d.set_max_table_size(100);
        assert!(d.decode(&[0x3f, 0x46]).is_err()); // 31 + 70 = 101
        let mut d = HpackDecoder::new(4096);
        d.set_max_table_size(100);
        d.decode(&[0x3f, 0x45]).unwrap(); // 100
        assert_eq!(d.table().capacity(), Some(100));
        assert_eq!(d.max_table_size(), 100);
    }

    #[test]
    fn header_list_limit_keeps_the_table_in_step() {
        let mut d = HpackDecoder::new(4096);
        let mut insert = vec![0x40];
        insert.extend(string(b"k", false));
        insert.extend(string(&[b'v'; 1000], false));
        d.decode(&insert).unwrap();
        d.set_max_header_list_size(10_000);
        // Ten references to the 1033-byte entry exceed 10 000 bytes.
        let error = d.decode(&[0xbe; 10]).unwrap_err();
        assert_eq!(error, HpackError::HeaderListTooLarge { limit: 10_000 });
        assert_eq!(d.table_state(), TableState::Synced);
        assert_eq!(d.decode(&[0xbe; 9]).unwrap().fields.len(), 9);
    }

    #[test]
    fn grpc_request_round_trip() {
        let token = b"hkLIWLOuNqyHHnyz.37";
        let mut block = vec![0x83, 0x86];
        block.push(0x44); // :path, incremental, name from static 4
        block.extend(string(b"/etcdserverpb.KV/Put", true));
        block.push(0x5f); // content-type (static 31), incremental
        block.extend(string(b"application/grpc", true));
        block.push(0x40);
        block.extend(string(b"te", false));
        block.extend(string(b"trailers", true));
        block.push(0x00); // without indexing, literal name
        block.extend(string(b"grpc-timeout", true));
        block.extend(string(b"4999853u", true));
        block.push(0x10); // never indexed
        block.extend(string(b"token", true));
        block.extend(string(token, true));
        // The Huffman-coded :path is 15 bytes, as seen in captures.
        assert_eq!(&block[2..4], &[0x44, 0x8f]);

        let expected = pairs(&[
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/etcdserverpb.KV/Put"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-timeout", "4999853u"),
            ("token", "hkLIWLOuNqyHHnyz.37"),
        ]);
        let mut d = HpackDecoder::new(4096);
        let decoded = d.decode(&block).unwrap();
        assert_eq!(known(&decoded), expected);
        assert_eq!(decoded.fields[6].indexing, Indexing::NeverIndexed);
        assert_eq!(
            table(&d),
            pairs(&[
                ("te", "trailers"),
                ("content-type", "application/grpc"),
                (":path", "/etcdserverpb.KV/Put"),
            ])
        );
        // The next request on the connection reuses the dynamic entries.
        let mut again = vec![0x83, 0x86, 0xc0, 0xbf, 0xbe];
        again.push(0x00);
        again.extend(string(b"grpc-timeout", true));
        again.extend(string(b"4999853u", true));
        again.push(0x10);
        again.extend(string(b"token", true));
        again.extend(string(token, true));
        assert_eq!(known(&d.decode(&again).unwrap()), expected);

        // Joined mid-connection, the second request yields unknown :path, content-type
        // and te, but the rest resolves.
        let mut late = HpackDecoder::new_midstream(4096);
        let decoded = late.decode(&again).unwrap();
        assert!(decoded.uncertain);
        assert_eq!(decoded.fields.iter().filter(|f| !f.is_known()).count(), 3);
        assert_eq!(decoded.get(b"token"), Some(&token[..]));
    }

    use crate::test_rng::XorShift;

    fn check_bounds(d: &HpackDecoder) {
        let table = d.table();
        let max = table.max_allowed() as usize;
        assert!(table.size() <= max, "{} > {}", table.size(), max);
        assert!(table.len() <= max / ENTRY_OVERHEAD);
        let stored: usize = table.iter().map(|e| e.name.len() + e.value.len()).sum();
        assert!(stored <= max);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = XorShift(0xdead_beef_cafe_f00d);
        let mut synced = HpackDecoder::new(4096);
        let mut midstream = HpackDecoder::new_midstream(256);
        for _ in 0..30_000 {
            let len = rng.index(48);
            let block: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            for d in [&mut synced, &mut midstream] {
                if let Ok(out) = d.decode(&block) {
                    assert!(out.fields.len() <= block.len());
                    assert_eq!(out.uncertain, out.fields.iter().any(|f| !f.is_known()));
                }
                check_bounds(d);
            }
        }
    }

    #[test]
    fn mutated_rfc_blocks_never_panic() {
        let corpus: Vec<Vec<u8>> = C3
            .iter()
            .chain(
                [
                    "4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
                    "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81",
                    "3fe1 1f82 7f07 0361 6263 be",
                ]
                .iter(),
            )
            .map(|s| hex(s))
            .collect();
        let mut rng = XorShift(0x0123_4567_89ab_cdef);
        let mut persistent = HpackDecoder::new_midstream(512);
        for _ in 0..20_000 {
            let mut block = corpus[rng.index(corpus.len())].clone();
            for _ in 0..=rng.index(4) {
                let at = rng.index(block.len() + 1);
                match rng.index(4) {
                    0 if at < block.len() => block[at] ^= 1 << rng.index(8),
                    1 if at < block.len() => block[at] = rng.next() as u8,
                    2 => block.insert(at, rng.next() as u8),
                    _ => block.truncate(at),
                }
            }
            let mut fresh = HpackDecoder::new(256);
            let _ = fresh.decode(&block);
            check_bounds(&fresh);
            let _ = persistent.decode(&block);
            check_bounds(&persistent);
        }
    }
}
