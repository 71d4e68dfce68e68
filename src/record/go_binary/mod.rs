//! Where to put uprobes on Go's crypto/tls in an executable, so that the recorder can
//! see etcd's TLS plaintext: the file offsets of `crypto/tls.(*Conn).Write`'s and
//! `crypto/tls.(*Conn).Read`'s first instructions and of every `ret` inside them.
//! Functions are found by the ELF symbol table when the program has one, else by
//! Go's own function table (`.gopclntab`), which stripped Go programs keep. The file
//! is untrusted input: every number read from it is bounds-checked, nothing panics.
#![forbid(unsafe_code)]

mod buildinfo;
mod disasm;
mod pclntab;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use object::{Architecture, Object, ObjectSection, ObjectSegment, ObjectSymbol, RelocationFlags};
use object::{SegmentFlags, SymbolKind};
use thiserror::Error;

use pclntab::{FuncRange, Layout, Pclntab, PclntabError};

pub const WRITE: &str = "crypto/tls.(*Conn).Write";
pub const READ: &str = "crypto/tls.(*Conn).Read";
/// The runtime's copy routine, which Read calls to hand over the plaintext.
pub const MEMMOVE: &str = "runtime.memmove";

/// Files above this size are refused: they are read whole (no memory mapping).
const MAX_FILE: u64 = 2 << 30;
/// Far above any real crypto/tls function; bounds what a bad table can make us decode.
const MAX_FUNCTION: u64 = 1 << 20;

/// Where to probe Go's crypto/tls in one executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsProbeSites {
    /// "go1.19.8", from `.go.buildinfo` when present.
    pub go_version: Option<String>,
    /// File offset of `crypto/tls.(*Conn).Write`'s first instruction.
    pub write_entry: u64,
    /// File offset of `crypto/tls.(*Conn).Read`'s first instruction.
    pub read_entry: u64,
    /// Where to probe Write's and Read's entry: the stack check's jump (one trap), or
    /// the first instruction when there is none.
    pub write_probe: u64,
    pub read_probe: u64,
    /// File offsets of Read's one call to `runtime.memmove`, the copy of the plaintext
    /// into the caller's buffer (source, destination and length in the registers); empty
    /// when Read does not have exactly one, and its returns are probed instead.
    pub read_copies: Vec<u64>,
    /// File offsets of every `ret` inside Read (never empty).
    pub read_returns: Vec<u64>,
    /// The same for Write.
    pub write_returns: Vec<u64>,
    /// "ELF symbols" or ".gopclntab".
    pub found_by: &'static str,
}

/// Why no probe sites: each message is one line for an operator.
#[derive(Debug, Error)]
pub enum ProbeSiteError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is larger than 2 GiB: not read as an executable", path.display())]
    TooLarge { path: PathBuf },
    #[error("not an ELF executable: TLS plaintext capture reads Linux x86-64 programs only")]
    NotElf,
    #[error("malformed ELF file: {0}")]
    BadElf(String),
    #[error("not an x86-64 executable ({0}): TLS plaintext capture supports x86-64 only")]
    NotX86_64(String),
    #[error("not a Go program (no .gopclntab section and no Go symbols)")]
    NotGo,
    #[error(
        "built with {0}, which passes arguments on the stack; \
         TLS plaintext capture needs Go 1.17 or newer (register ABI)"
    )]
    StackAbi(String),
    #[error("unknown .gopclntab layout (magic {0:#010x})")]
    UnknownPclntab(u32),
    #[error("malformed .gopclntab: {0}")]
    BadPclntab(&'static str),
    #[error("{0} not found: this program does not use Go's crypto/tls")]
    NotFound(&'static str),
    #[error("{name} at {vaddr:#x} is not inside the program's code in the file")]
    NotInCode { name: &'static str, vaddr: u64 },
    #[error("{name} at {vaddr:#x} does not decode as x86-64 code: {why}")]
    BadCode {
        name: &'static str,
        vaddr: u64,
        why: String,
    },
    #[error(
        "{name} at {vaddr:#x} lacks the goroutine stack check of Go 1.17+ code (through r14): \
         not register-ABI Go code"
    )]
    NoRegisterAbi { name: &'static str, vaddr: u64 },
    #[error("no ret instruction found in {0}: its returns cannot be probed")]
    NoReturns(&'static str),
}

impl From<PclntabError> for ProbeSiteError {
    fn from(e: PclntabError) -> Self {
        match e {
            PclntabError::UnknownMagic(magic) => ProbeSiteError::UnknownPclntab(magic),
            PclntabError::Malformed(why) => ProbeSiteError::BadPclntab(why),
        }
    }
}

/// Reads the executable at `path` (at most 2 GiB) and finds its probe sites.
pub fn find_tls_probe_sites(path: &Path) -> Result<TlsProbeSites, ProbeSiteError> {
    let io = |source| ProbeSiteError::Io {
        path: path.to_owned(),
        source,
    };
    let too_large = || ProbeSiteError::TooLarge {
        path: path.to_owned(),
    };
    let file = File::open(path).map_err(io)?;
    let len = file.metadata().map_err(io)?.len();
    if len > MAX_FILE {
        return Err(too_large());
    }
    let mut data = Vec::with_capacity(len as usize);
    // The bound holds even if the file grows, or is not a regular file.
    file.take(MAX_FILE + 1).read_to_end(&mut data).map_err(io)?;
    if data.len() as u64 > MAX_FILE {
        return Err(too_large());
    }
    find_tls_probe_sites_in(&data)
}

/// The same, on an executable's bytes.
pub fn find_tls_probe_sites_in(data: &[u8]) -> Result<TlsProbeSites, ProbeSiteError> {
    if !data.starts_with(b"\x7fELF") {
        return Err(ProbeSiteError::NotElf);
    }
    let file = object::File::parse(data).map_err(|e| ProbeSiteError::BadElf(e.to_string()))?;
    match file.architecture() {
        Architecture::X86_64 => {}
        other => return Err(ProbeSiteError::NotX86_64(arch_name(other))),
    }
    let loads = Loads::of(&file, data);

    let go_version = file
        .section_by_name(".go.buildinfo")
        .and_then(|s| s.data().ok())
        .and_then(|s| buildinfo::go_version(s, |vaddr, len| loads.bytes(vaddr, len)));
    let table = find_pclntab(&file);
    let symbols = Symbols::of(&file);
    if go_version.is_none() && table.is_none() && !symbols.go {
        return Err(ProbeSiteError::NotGo);
    }
    let go_version = go_version.flatten();
    let layout = match &table {
        Some(Ok((_, t))) => Some(t.layout),
        _ => None,
    };
    check_abi(go_version.as_deref(), layout)?;

    let ([write, read], memmove, found_by) = match symbols.ranges {
        [Some(w), Some(r), m] => ([w, r], m, "ELF symbols"),
        _ => {
            let (table_vaddr, table) = match table {
                Some(found) => found?,
                None if symbols.ranges[1].is_none() => return Err(ProbeSiteError::NotFound(READ)),
                None => return Err(ProbeSiteError::NotFound(WRITE)),
            };
            let text_start = text_start(&file, &table, table_vaddr)?;
            match table.find([WRITE, READ, MEMMOVE], text_start)? {
                [Some(w), Some(r), m] => ([w, r], m, ".gopclntab"),
                [_, None, _] => return Err(ProbeSiteError::NotFound(READ)),
                [None, _, _] => return Err(ProbeSiteError::NotFound(WRITE)),
            }
        }
    };
    let write_code = loads.probe_sites(WRITE, write)?;
    let read_code = loads.probe_sites(READ, read)?;
    if read_code.returns.is_empty() {
        return Err(ProbeSiteError::NoReturns(READ));
    }
    let copies: Vec<u64> = match memmove {
        Some(m) => read_code
            .calls
            .iter()
            .filter(|(_, target)| *target == m.entry)
            .map(|(at, _)| *at)
            .collect(),
        None => Vec::new(),
    };
    Ok(TlsProbeSites {
        go_version,
        write_entry: write_code.entry,
        read_entry: read_code.entry,
        write_probe: write_code.entry_probe,
        read_probe: read_code.entry_probe,
        read_copies: if copies.len() == 1 {
            copies
        } else {
            Vec::new()
        },
        read_returns: read_code.returns,
        write_returns: write_code.returns,
        found_by,
    })
}

fn arch_name(arch: Architecture) -> String {
    match arch {
        Architecture::I386 => "i386".into(),
        Architecture::X86_64_X32 => "x32".into(),
        Architecture::Unknown => "unknown machine".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// Register arguments came to amd64 with Go 1.17. A version string decides; without
/// one, only the oldest table layout does, and the prologue check decides the rest.
fn check_abi(version: Option<&str>, layout: Option<Layout>) -> Result<(), ProbeSiteError> {
    match (version, version.and_then(buildinfo::go1_minor)) {
        (Some(v), Some(minor)) if minor < 17 => Err(ProbeSiteError::StackAbi(v.to_owned())),
        (_, Some(_)) => Ok(()),
        (_, None) if layout == Some(Layout::Go12) => Err(ProbeSiteError::StackAbi(format!(
            "{} (by its .gopclntab layout)",
            Layout::Go12.releases()
        ))),
        (_, None) => Ok(()),
    }
}

/// The function table and its virtual address: its own section, or inside
/// `.data.rel.ro` where an external linker merged it. `None` when there is none.
fn find_pclntab<'a>(file: &object::File<'a>) -> Option<Result<(u64, Pclntab<'a>), PclntabError>> {
    for name in [".gopclntab", ".data.rel.ro.gopclntab"] {
        if let Some(section) = file.section_by_name(name) {
            let Ok(data) = section.data() else {
                return Some(Err(PclntabError::Malformed("section not in the file")));
            };
            return Some(Pclntab::parse(data).map(|t| (section.address(), t)));
        }
    }
    let section = file.section_by_name(".data.rel.ro")?;
    let data = section.data().ok()?;
    let at = pclntab::locate(data, section.address())?;
    Some(Pclntab::parse(&data[at..]).map(|t| (section.address().wrapping_add(at as u64), t)))
}

/// Go 1.18+ entries are offsets from the text start in the table's header. A position
/// independent program has a dynamic relocation fill that word in at load time.
fn text_start(
    file: &object::File<'_>,
    table: &Pclntab<'_>,
    table_vaddr: u64,
) -> Result<u64, ProbeSiteError> {
    let Some((word, _)) = table.text_start_word() else {
        return Ok(0);
    };
    if table.text_start != 0 {
        return Ok(table.text_start);
    }
    let at = table_vaddr.checked_add(word as u64);
    file.dynamic_relocations()
        .into_iter()
        .flatten()
        .find(|(offset, reloc)| {
            Some(*offset) == at
                && reloc.flags()
                    == RelocationFlags::Elf {
                        r_type: object::elf::R_X86_64_RELATIVE,
                    }
        })
        .map(|(_, reloc)| reloc.addend() as u64)
        .ok_or(ProbeSiteError::BadPclntab(
            "text start is zero and no relocation sets it",
        ))
}

/// What the ELF symbol table says.
struct Symbols {
    /// Write's, Read's and runtime.memmove's code, when named there with a size.
    ranges: [Option<FuncRange>; 3],
    /// The table names Go's runtime.
    go: bool,
}

impl Symbols {
    fn of(file: &object::File<'_>) -> Symbols {
        let mut out = Symbols {
            ranges: [None, None, None],
            go: false,
        };
        for symbol in file.symbols() {
            let Ok(name) = symbol.name_bytes() else {
                continue;
            };
            out.go |= name == b"runtime.main";
            if symbol.kind() != SymbolKind::Text || symbol.size() == 0 {
                continue;
            }
            for (k, wanted) in [WRITE, READ, MEMMOVE].iter().enumerate() {
                if name == wanted.as_bytes() && out.ranges[k].is_none() {
                    out.ranges[k] =
                        symbol
                            .address()
                            .checked_add(symbol.size())
                            .map(|end| FuncRange {
                                entry: symbol.address(),
                                end,
                            });
                }
            }
        }
        out
    }
}

/// The file-backed part of a loadable segment.
struct Load {
    vaddr: u64,
    offset: u64,
    size: u64,
    exec: bool,
}

/// The loadable segments: how a virtual address maps to the file.
struct Loads<'a> {
    data: &'a [u8],
    segments: Vec<Load>,
}

impl<'a> Loads<'a> {
    fn of(file: &object::File<'a>, data: &'a [u8]) -> Loads<'a> {
        let segments = file
            .segments()
            .map(|s| {
                let (offset, size) = s.file_range();
                let exec = matches!(s.flags(), SegmentFlags::Elf { p_flags } if p_flags & object::elf::PF_X != 0);
                Load {
                    vaddr: s.address(),
                    offset,
                    size,
                    exec,
                }
            })
            .collect();
        Loads { data, segments }
    }

    /// The file offset of `len` bytes at `vaddr`, all in one segment and in the file,
    /// and whether that segment is executable.
    fn offset(&self, vaddr: u64, len: u64) -> Option<(u64, bool)> {
        self.segments.iter().find_map(|s| {
            let into = vaddr.checked_sub(s.vaddr)?;
            let end = into.checked_add(len)?;
            let file_end = s.offset.checked_add(end)?;
            (end <= s.size && file_end <= self.data.len() as u64)
                .then_some((s.offset + into, s.exec))
        })
    }

    fn bytes(&self, vaddr: u64, len: usize) -> Option<&'a [u8]> {
        let (offset, _) = self.offset(vaddr, len as u64)?;
        let start = usize::try_from(offset).ok()?;
        self.data.get(start..start.checked_add(len)?)
    }

    /// A function's entry, entry probe, returns and direct calls as file offsets (call
    /// targets stay virtual addresses), after checking that its code decodes whole and
    /// starts like register-ABI Go code.
    fn probe_sites(
        &self,
        name: &'static str,
        range: FuncRange,
    ) -> Result<FuncCode, ProbeSiteError> {
        let vaddr = range.entry;
        let len = range.end - range.entry;
        if len > MAX_FUNCTION {
            return Err(ProbeSiteError::BadCode {
                name,
                vaddr,
                why: format!("{len} bytes long"),
            });
        }
        let offset = match self.offset(vaddr, len) {
            Some((offset, true)) => offset,
            _ => return Err(ProbeSiteError::NotInCode { name, vaddr }),
        };
        let code = &self.data[offset as usize..(offset + len) as usize];
        let scan = disasm::scan(code, vaddr).map_err(|why| ProbeSiteError::BadCode {
            name,
            vaddr,
            why,
        })?;
        if !scan.register_abi_stack_check {
            return Err(ProbeSiteError::NoRegisterAbi { name, vaddr });
        }
        let at = |ip: u64| offset + ip.wrapping_sub(vaddr);
        Ok(FuncCode {
            entry: offset,
            entry_probe: scan.stack_check_jump.map_or(offset, at),
            returns: scan.returns.iter().map(|&ret| at(ret)).collect(),
            calls: scan
                .calls
                .iter()
                .map(|&(ip, target)| (at(ip), target))
                .collect(),
        })
    }
}

/// One function's probe sites as file offsets.
struct FuncCode {
    entry: u64,
    entry_probe: u64,
    returns: Vec<u64>,
    /// (file offset of the call, virtual address of its target).
    calls: Vec<(u64, u64)>,
}
