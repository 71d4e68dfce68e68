//! The HPACK header tables (RFC 7541 §2.3, §4): the 61-entry static table and a dynamic
//! table that knows it may be incomplete.
//!
//! A passive decoder can miss the encoder's older entries (it started mid-connection, or
//! forgot its entries after a lost block). The dynamic table therefore holds the entries
//! it saw inserted, newest first, plus a flag saying that unseen *older* entries may sit
//! behind them. Insertion only adds at the newest end and eviction only removes from the
//! oldest end, so the entries we saw keep their exact positions; the unseen ones are
//! always older than all of them.
//!
//! Sizes follow the same idea. An entry whose name came from an unseen entry has an
//! unknown size; it is counted with an empty name, a lower bound. When the capacity is
//! unknown (no size update seen since the gap) eviction uses the upper bound, the
//! SETTINGS maximum. Both choices keep *more* of our entries than the encoder may hold:
//! an encoder never references an entry it evicted, so a surplus at the old end is never
//! read, while every entry the encoder still holds stays resolvable. The same bounds prove
//! when the unseen entries must all be gone (see [`DynamicTable::insert`]); from then on
//! the table is complete again.

use std::collections::VecDeque;

use bytes::Bytes;

use super::decoder::FieldText;

/// Number of entries in the static table; dynamic indices start after it.
pub const STATIC_TABLE_LEN: u32 = 61;

/// Bytes each dynamic entry counts beyond its name and value (RFC 7541 §4.1).
pub const ENTRY_OVERHEAD: usize = 32;

/// The initial SETTINGS_HEADER_TABLE_SIZE of HTTP/2.
pub const DEFAULT_MAX_TABLE_SIZE: u32 = 4096;

/// RFC 7541 Appendix A, index 1 first.
const STATIC_TABLE: [(&str, &str); STATIC_TABLE_LEN as usize] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The static entry at `index` (1..=61) as (name, value).
pub fn static_entry(index: u32) -> Option<(&'static [u8], &'static [u8])> {
    let slot = usize::try_from(index.checked_sub(1)?).ok()?;
    STATIC_TABLE
        .get(slot)
        .map(|(name, value)| (name.as_bytes(), value.as_bytes()))
}

/// One dynamic-table entry. The value is always known (it was a literal); the name is
/// unknown when it was taken from an entry this decoder never saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicEntry {
    pub name: FieldText,
    pub value: Bytes,
}

impl DynamicEntry {
    /// The RFC 7541 §4.1 size, counting an unknown name as empty (a lower bound).
    pub fn size_lower_bound(&self) -> usize {
        let name_len = self.name.as_bytes().map_or(0, <[u8]>::len);
        name_len
            .saturating_add(self.value.len())
            .saturating_add(ENTRY_OVERHEAD)
    }

    /// Whether [`Self::size_lower_bound`] is the exact size.
    pub fn size_is_exact(&self) -> bool {
        self.name.is_known()
    }
}

/// The dynamic table as far as this decoder knows it. See the module doc for the model.
#[derive(Debug, Clone)]
pub struct DynamicTable {
    /// Entries seen inserted, newest first: `entries[0]` is index 62.
    entries: VecDeque<DynamicEntry>,
    /// Sum of the entries' size lower bounds.
    size: usize,
    /// The encoder's current maximum size, when known (from the connection start or a
    /// size update seen since the last gap).
    capacity: Option<u32>,
    /// SETTINGS_HEADER_TABLE_SIZE: the bound on `capacity`.
    max_allowed: u32,
    /// Entries older than `entries` may exist that we never saw.
    unseen_older: bool,
    /// Counts the changes to the table: equal generations of one table mean the same
    /// contents, so a block decoded once decodes the same again.
    generation: u64,
}

impl DynamicTable {
    /// An empty table at the start of a connection: capacity `max_allowed`, complete.
    pub fn new_synced(max_allowed: u32) -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            capacity: Some(max_allowed),
            max_allowed,
            unseen_older: false,
            generation: 0,
        }
    }

    /// A table joined mid-connection: nothing known, capacity unknown (at most
    /// `max_allowed`), older entries may exist.
    pub fn new_midstream(max_allowed: u32) -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            capacity: None,
            max_allowed,
            unseen_older: true,
            generation: 0,
        }
    }

    /// Number of entries known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Size of the known entries (RFC 7541 §4.1); exact when every known entry has a known
    /// name and no unseen entries remain, otherwise a lower bound.
    pub fn size(&self) -> usize {
        self.size
    }

    /// The encoder's table capacity, when known.
    pub fn capacity(&self) -> Option<u32> {
        self.capacity
    }

    /// The SETTINGS_HEADER_TABLE_SIZE bound in force.
    pub fn max_allowed(&self) -> u32 {
        self.max_allowed
    }

    /// Whether entries older than the known ones may exist unseen.
    pub fn has_unseen_older(&self) -> bool {
        self.unseen_older
    }

    /// The known entry at zero-based position `pos` (index `62 + pos`).
    /// See the field: it changes whenever the table does.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn get(&self, pos: usize) -> Option<&DynamicEntry> {
        self.entries.get(pos)
    }

    /// Known entries, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &DynamicEntry> {
        self.entries.iter()
    }

    /// The most entries the encoder's table can hold (every entry is at least 32 bytes).
    pub fn max_possible_entries(&self) -> u32 {
        self.capacity.unwrap_or(self.max_allowed) / ENTRY_OVERHEAD as u32
    }

    /// Capacity for eviction: the exact one when known, else its upper bound.
    fn capacity_upper_bound(&self) -> usize {
        let capacity = self.capacity.unwrap_or(self.max_allowed);
        usize::try_from(capacity).unwrap_or(usize::MAX)
    }

    /// Inserts at the newest end, evicting from the oldest end (RFC 7541 §4.4).
    ///
    /// Unseen entries are proved gone when the known entries plus the new one plus a
    /// minimal (32-byte) unseen entry cannot fit: the encoder evicts oldest first, so any
    /// unseen survivor would leave at least that much in its table.
    pub fn insert(&mut self, entry: DynamicEntry) {
        self.generation = self.generation.wrapping_add(1);
        let entry_size = entry.size_lower_bound();
        let capacity = self.capacity_upper_bound();
        if self.unseen_older
            && self
                .size
                .saturating_add(entry_size)
                .saturating_add(ENTRY_OVERHEAD)
                > capacity
        {
            self.unseen_older = false;
        }
        if entry_size > capacity {
            // Larger than the table: the table empties and the entry is not added.
            self.entries.clear();
            self.size = 0;
            return;
        }
        self.evict_to(capacity - entry_size);
        self.size = self.size.saturating_add(entry_size);
        self.entries.push_front(entry);
    }

    /// Applies a dynamic table size update from the encoder. The caller checks it against
    /// [`Self::max_allowed`].
    pub fn update_capacity(&mut self, capacity: u32) {
        self.generation = self.generation.wrapping_add(1);
        self.capacity = Some(capacity);
        let capacity = self.capacity_upper_bound();
        if self.unseen_older && self.size.saturating_add(ENTRY_OVERHEAD) > capacity {
            self.unseen_older = false;
        }
        self.evict_to(capacity);
    }

    /// Changes the SETTINGS bound. A known capacity above it is clamped to it (the encoder
    /// must shrink its table before its next header block anyway).
    pub fn set_max_allowed(&mut self, max_allowed: u32) {
        self.generation = self.generation.wrapping_add(1);
        self.max_allowed = max_allowed;
        if let Some(capacity) = self.capacity {
            self.capacity = Some(capacity.min(max_allowed));
        }
        self.evict_to(self.capacity_upper_bound());
    }

    /// Forgets every entry and the capacity: after a lost block the encoder may have
    /// inserted entries in front of ours (shifting them by an unknown amount) and changed
    /// its capacity, so all of ours become "unseen older" entries.
    pub fn forget_all(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        self.entries.clear();
        self.size = 0;
        self.capacity = None;
        self.unseen_older = true;
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            match self.entries.pop_back() {
                Some(oldest) => {
                    self.size = self.size.saturating_sub(oldest.size_lower_bound());
                }
                None => {
                    self.size = 0;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, value: &str) -> DynamicEntry {
        DynamicEntry {
            name: FieldText::Known(Bytes::copy_from_slice(name.as_bytes())),
            value: Bytes::copy_from_slice(value.as_bytes()),
        }
    }

    #[test]
    fn static_table_ends() {
        assert_eq!(static_entry(0), None);
        assert_eq!(static_entry(1), Some((&b":authority"[..], &b""[..])));
        assert_eq!(static_entry(2), Some((&b":method"[..], &b"GET"[..])));
        assert_eq!(
            static_entry(16),
            Some((&b"accept-encoding"[..], &b"gzip, deflate"[..]))
        );
        assert_eq!(static_entry(31), Some((&b"content-type"[..], &b""[..])));
        assert_eq!(static_entry(61), Some((&b"www-authenticate"[..], &b""[..])));
        assert_eq!(static_entry(62), None);
        assert_eq!(static_entry(u32::MAX), None);
    }

    #[test]
    fn synced_eviction_is_exact() {
        let mut table = DynamicTable::new_synced(100);
        table.insert(entry("aaaa", "bbbb")); // 40
        table.insert(entry("cccc", "dddd")); // 40
        assert_eq!((table.len(), table.size()), (2, 80));
        table.insert(entry("eeee", "ffff")); // evicts the oldest
        assert_eq!((table.len(), table.size()), (2, 80));
        assert_eq!(table.get(0).unwrap().value, &b"ffff"[..]);
        assert_eq!(table.get(1).unwrap().value, &b"dddd"[..]);
        // Too large for the table: everything goes, nothing is added.
        table.insert(entry("x", &"y".repeat(100)));
        assert_eq!((table.len(), table.size()), (0, 0));
        table.insert(entry("aaaa", "bbbb"));
        table.update_capacity(0);
        assert!(table.is_empty());
        assert!(!table.has_unseen_older());
    }

    #[test]
    fn midstream_unseen_entries_are_proved_gone() {
        let mut table = DynamicTable::new_midstream(4096);
        assert!(table.has_unseen_older());
        assert_eq!(table.max_possible_entries(), 128);
        // Small insertions cannot prove anything.
        table.insert(entry("aaaa", "bbbb"));
        assert!(table.has_unseen_older());
        // A size update to a capacity our entries nearly fill does.
        table.update_capacity(60);
        assert!(!table.has_unseen_older());
        assert_eq!(table.len(), 1);

        let mut table = DynamicTable::new_midstream(4096);
        table.insert(entry("big", &"v".repeat(4000)));
        assert!(table.has_unseen_older(), "4035 + 32 still fits in 4096");
        table.insert(entry("k", "v"));
        assert!(!table.has_unseen_older());
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn unknown_names_count_as_empty() {
        let mut table = DynamicTable::new_midstream(4096);
        table.insert(DynamicEntry {
            name: FieldText::Unknown { index: 70 },
            value: Bytes::from_static(b"abc"),
        });
        assert_eq!(table.size(), 35);
        assert!(!table.get(0).unwrap().size_is_exact());
    }

    #[test]
    fn forget_and_settings() {
        let mut table = DynamicTable::new_synced(4096);
        table.insert(entry("aaaa", "bbbb"));
        table.set_max_allowed(50);
        assert_eq!(table.capacity(), Some(50));
        assert_eq!(table.len(), 1);
        table.set_max_allowed(10);
        assert!(table.is_empty());
        table.set_max_allowed(4096);
        assert_eq!(table.capacity(), Some(10));
        table.forget_all();
        assert!(table.has_unseen_older());
        assert_eq!(table.capacity(), None);
        assert_eq!(table.max_possible_entries(), 128);
    }
}
