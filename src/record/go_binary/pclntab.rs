//! Go's own function table (`.gopclntab`): a stripped Go program still names every
//! function there, for its stack traces. Only what finding a function by name needs is
//! read: the header, the function table and each function's name. Every number read
//! from the file is checked against the table's size before it is used.
#![forbid(unsafe_code)]

use thiserror::Error;

const MAGIC_GO12: u32 = 0xffff_fffb;
const MAGIC_GO116: u32 = 0xffff_fffa;
const MAGIC_GO118: u32 = 0xffff_fff0;
const MAGIC_GO120: u32 = 0xffff_fff1;

/// The table's layout, named by the Go releases that write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Go 1.2–1.15: absolute entries; names relative to the table's start.
    Go12,
    /// Go 1.16–1.17: absolute entries; a separate name table.
    Go116,
    /// Go 1.18–1.19: 32-bit entries relative to the text start.
    Go118,
    /// Go 1.20 and later: as Go 1.18 in all that is read here.
    Go120,
}

impl Layout {
    fn from_magic(magic: u32) -> Option<Layout> {
        match magic {
            MAGIC_GO12 => Some(Layout::Go12),
            MAGIC_GO116 => Some(Layout::Go116),
            MAGIC_GO118 => Some(Layout::Go118),
            MAGIC_GO120 => Some(Layout::Go120),
            _ => None,
        }
    }

    /// The Go releases that write this layout, for messages.
    pub fn releases(self) -> &'static str {
        match self {
            Layout::Go12 => "Go 1.2–1.15",
            Layout::Go116 => "Go 1.16–1.17",
            Layout::Go118 => "Go 1.18–1.19",
            Layout::Go120 => "Go 1.20 or newer",
        }
    }

    /// Entries are offsets from the text start (a header word) rather than addresses.
    pub fn relative_entries(self) -> bool {
        matches!(self, Layout::Go118 | Layout::Go120)
    }
}

#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PclntabError {
    #[error("unknown .gopclntab layout (magic {0:#010x})")]
    UnknownMagic(u32),
    #[error("malformed .gopclntab: {0}")]
    Malformed(&'static str),
}

/// A function's code, as virtual addresses: `entry..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FuncRange {
    pub entry: u64,
    pub end: u64,
}

/// A parsed header over the table's bytes.
#[derive(Debug)]
pub struct Pclntab<'a> {
    data: &'a [u8],
    pub layout: Layout,
    ptr_size: usize,
    nfunc: usize,
    /// Where the function table starts, and the size of each of its fields.
    pub(super) functab: usize,
    field: usize,
    /// What a function's record offset and a name offset are relative to.
    funcdata: usize,
    funcnames: usize,
    /// The text start as written in the header (Go 1.18+; 0 before). A position
    /// independent program leaves it to a dynamic relocation.
    pub text_start: u64,
}

fn read_u32(data: &[u8], at: usize) -> Option<u32> {
    let bytes = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

fn read_word(data: &[u8], at: usize, size: usize) -> Option<u64> {
    match size {
        4 => read_u32(data, at).map(u64::from),
        8 => {
            let bytes = data.get(at..at.checked_add(8)?)?;
            Some(u64::from_le_bytes(bytes.try_into().ok()?))
        }
        _ => None,
    }
}

/// A header word that is an offset into the table: it must lie inside it.
fn offset_word(data: &[u8], index: usize, ptr_size: usize) -> Result<usize, PclntabError> {
    let word = read_word(data, 8 + index * ptr_size, ptr_size)
        .ok_or(PclntabError::Malformed("header cut short"))?;
    usize::try_from(word)
        .ok()
        .filter(|&off| off <= data.len())
        .ok_or(PclntabError::Malformed(
            "header offset past the table's end",
        ))
}

impl<'a> Pclntab<'a> {
    /// Reads the header (little-endian: the only byte order of x86-64).
    pub fn parse(data: &'a [u8]) -> Result<Pclntab<'a>, PclntabError> {
        let magic = read_u32(data, 0).ok_or(PclntabError::Malformed("shorter than its header"))?;
        let layout = Layout::from_magic(magic).ok_or(PclntabError::UnknownMagic(magic))?;
        let (pad1, pad2, quantum, ptr_size) = match data.get(4..8) {
            Some(&[a, b, q, p]) => (a, b, q, usize::from(p)),
            _ => return Err(PclntabError::Malformed("shorter than its header")),
        };
        if pad1 != 0 || pad2 != 0 || !matches!(quantum, 1 | 2 | 4) || !matches!(ptr_size, 4 | 8) {
            return Err(PclntabError::Malformed("bad header bytes"));
        }
        let nfunc_word =
            read_word(data, 8, ptr_size).ok_or(PclntabError::Malformed("header cut short"))?;
        let mut table = Pclntab {
            data,
            layout,
            ptr_size,
            nfunc: 0,
            functab: 0,
            field: ptr_size,
            funcdata: 0,
            funcnames: 0,
            text_start: 0,
        };
        match layout {
            Layout::Go118 | Layout::Go120 => {
                // Words: nfunc, nfiles, text start, funcname, cu, filetab, pctab, pcln.
                table.text_start = read_word(data, 8 + 2 * ptr_size, ptr_size)
                    .ok_or(PclntabError::Malformed("header cut short"))?;
                table.funcnames = offset_word(data, 3, ptr_size)?;
                table.funcdata = offset_word(data, 7, ptr_size)?;
                table.functab = table.funcdata;
                table.field = 4;
            }
            Layout::Go116 => {
                // Words: nfunc, nfiles, funcname, cu, filetab, pctab, pcln.
                table.funcnames = offset_word(data, 2, ptr_size)?;
                table.funcdata = offset_word(data, 6, ptr_size)?;
                table.functab = table.funcdata;
            }
            Layout::Go12 => {
                // nfunc, then the function table; offsets are from the table's start.
                table.functab = 8 + ptr_size;
            }
        }
        // The function table holds nfunc (entry, record offset) pairs and a closing
        // entry: bounding it by the bytes left bounds nfunc.
        let room = (data.len().saturating_sub(table.functab) / table.field).saturating_sub(1) / 2;
        table.nfunc = usize::try_from(nfunc_word)
            .ok()
            .filter(|&n| n <= room)
            .ok_or(PclntabError::Malformed(
                "function count larger than the table",
            ))?;
        Ok(table)
    }

    /// Where, from the table's start, the header keeps the text start (Go 1.18+).
    pub fn text_start_word(&self) -> Option<(usize, usize)> {
        self.layout
            .relative_entries()
            .then_some((8 + 2 * self.ptr_size, self.ptr_size))
    }

    /// Row `i`'s entry as an address (`i == nfunc` is the end of the last function).
    fn entry(&self, i: usize, text_start: u64) -> Option<u64> {
        let at = self.functab.checked_add(i.checked_mul(2 * self.field)?)?;
        let word = read_word(self.data, at, self.field)?;
        if self.layout.relative_entries() {
            text_start.checked_add(word)
        } else {
            Some(word)
        }
    }

    /// Where row `i`'s function record starts in the table.
    pub(super) fn record(&self, i: usize) -> Option<usize> {
        let at = self
            .functab
            .checked_add(i.checked_mul(2 * self.field)?.checked_add(self.field)?)?;
        let off = usize::try_from(read_word(self.data, at, self.field)?).ok()?;
        let record = self.funcdata.checked_add(off)?;
        (record < self.data.len()).then_some(record)
    }

    /// The record's name field: after the entry (32 bits from Go 1.18, a word before).
    fn name_at(&self, record: usize) -> Option<usize> {
        let entry_size = if self.layout.relative_entries() {
            4
        } else {
            self.ptr_size
        };
        let name_off = read_u32(self.data, record.checked_add(entry_size)?)?;
        // A signed field in Go: a negative one is as broken as one past the end.
        let name_off = usize::try_from(i32::try_from(name_off).ok()?).ok()?;
        let at = self.funcnames.checked_add(name_off)?;
        (at < self.data.len()).then_some(at)
    }

    /// Finds each of `names` in one pass over the table, without allocating per
    /// function. The first function of a name wins.
    pub fn find<const N: usize>(
        &self,
        names: [&str; N],
        text_start: u64,
    ) -> Result<[Option<FuncRange>; N], PclntabError> {
        let mut found = [None; N];
        let mut left = N;
        for i in 0..self.nfunc {
            let record = self.record(i).ok_or(PclntabError::Malformed(
                "function record past the table's end",
            ))?;
            let at = self.name_at(record).ok_or(PclntabError::Malformed(
                "function name past the table's end",
            ))?;
            let rest = &self.data[at..];
            for (k, name) in names.iter().enumerate() {
                let name = name.as_bytes();
                if found[k].is_none() && rest.starts_with(name) && rest.get(name.len()) == Some(&0)
                {
                    found[k] = Some(self.range(i, record, text_start)?);
                    left -= 1;
                }
            }
            if left == 0 {
                break;
            }
        }
        Ok(found)
    }

    /// Row `i`'s code range, checked against the function's own record.
    fn range(&self, i: usize, record: usize, text_start: u64) -> Result<FuncRange, PclntabError> {
        let bad = PclntabError::Malformed("function entry out of range");
        let entry = self.entry(i, text_start).ok_or(bad.clone())?;
        let end = self.entry(i + 1, text_start).ok_or(bad.clone())?;
        if end <= entry {
            return Err(PclntabError::Malformed("function ends before it starts"));
        }
        // The record repeats the entry (as the table's own field): a mismatch means the
        // row and the record are not of the same function.
        let own = if self.layout.relative_entries() {
            read_u32(self.data, record).map(|off| text_start.checked_add(u64::from(off)))
        } else {
            read_word(self.data, record, self.ptr_size).map(Some)
        };
        if own.flatten() != Some(entry) {
            return Err(PclntabError::Malformed(
                "function record disagrees with its row",
            ));
        }
        Ok(FuncRange { entry, end })
    }
}

/// Finds a table inside a larger section (`.data.rel.ro` of externally linked
/// programs, where the linker merged it): the first pointer-aligned known magic whose
/// header parses and names at least one function. Returns its offset in `section`.
pub fn locate(section: &[u8], section_addr: u64) -> Option<usize> {
    let skip = ((8 - (section_addr % 8)) % 8) as usize;
    (skip..section.len().saturating_sub(8))
        .step_by(8)
        .filter(|&at| read_u32(section, at).and_then(Layout::from_magic).is_some())
        .find(|&at| Pclntab::parse(&section[at..]).is_ok_and(|t| t.nfunc > 0))
}
