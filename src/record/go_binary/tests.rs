//! Tests of the Go binary reader: real Go programs when this machine has them (Debian's
//! etcd in CI), hand-built tables of every layout, and damaged input that must give an
//! error, never a panic.

use std::path::{Path, PathBuf};
use std::time::Instant;

use object::{Object, ObjectSection};

use super::buildinfo::{go1_minor, go_version};
use super::disasm;
use super::pclntab::{locate, FuncRange, Layout, Pclntab, PclntabError};
use super::*;
use crate::test_rng::XorShift;

const ETCD: &str = "/usr/bin/etcd";

fn read_or_skip(path: &str) -> Option<Vec<u8>> {
    match std::fs::read(path) {
        Ok(data) => Some(data),
        Err(e) => {
            eprintln!("skipped {path}: {e}");
            None
        }
    }
}

/// Go's stack check as the compiler writes it on amd64 with the register ABI:
/// `cmp rsp, [r14+0x10]`, or `lea r12, [rsp-N]; cmp r12, [r14+0x10]` for larger frames.
fn starts_with_go_stack_check(code: &[u8]) -> bool {
    const CMP_RSP: [u8; 4] = [0x49, 0x3b, 0x66, 0x10];
    const CMP_R12: [u8; 4] = [0x4d, 0x3b, 0x66, 0x10];
    code.starts_with(&CMP_RSP)
        || (code.starts_with(&[0x4c, 0x8d, 0x64, 0x24]) && code[5..].starts_with(&CMP_R12))
        || (code.starts_with(&[0x4c, 0x8d, 0xa4, 0x24]) && code[8..].starts_with(&CMP_R12))
}

/// What must hold of any successful lookup, checked on the file's bytes.
fn check_sites(data: &[u8], sites: &TlsProbeSites) {
    for entry in [sites.write_entry, sites.read_entry] {
        let at = usize::try_from(entry).unwrap();
        assert!(at < data.len());
        assert!(
            starts_with_go_stack_check(&data[at..]),
            "no Go prologue at {entry:#x}: {:02x?}",
            &data[at..at + 12]
        );
    }
    assert!(!sites.read_returns.is_empty());
    assert!(!sites.write_returns.is_empty());
    for (entry, rets) in [
        (sites.read_entry, &sites.read_returns),
        (sites.write_entry, &sites.write_returns),
    ] {
        for &ret in rets {
            assert!(ret > entry && ret < entry + MAX_FUNCTION);
            // A near return: c3, or c2 with an immediate.
            assert!(
                matches!(data[ret as usize], 0xc3 | 0xc2),
                "not a ret at {ret:#x}"
            );
        }
    }
}

/// The function table of a program by the same steps as the lookup, with the text
/// start resolved.
fn pclntab_of(data: &[u8]) -> (Pclntab<'_>, u64) {
    let file = object::File::parse(data).unwrap();
    let (vaddr, table) = find_pclntab(&file).expect("a .gopclntab").unwrap();
    let text = text_start(&file, &table, vaddr).unwrap();
    (table, text)
}

#[test]
fn debian_etcd_is_found_through_gopclntab() {
    let Some(data) = read_or_skip(ETCD) else {
        return;
    };
    let started = Instant::now();
    let sites = find_tls_probe_sites(Path::new(ETCD)).unwrap();
    eprintln!(
        "lookup on {ETCD}: {:?} (this build's profile)",
        started.elapsed()
    );
    eprintln!("{sites:#x?}");
    assert_eq!(sites.found_by, ".gopclntab");
    assert_eq!(sites.go_version.as_deref(), Some("go1.19.8"));
    check_sites(&data, &sites);
    assert_eq!(find_tls_probe_sites_in(&data).unwrap(), sites);

    // The probes sit in .text, which starts before Go's text start (this build is
    // linked externally): an entry reckoned from .text would be off by 0x100.
    let file = object::File::parse(&*data).unwrap();
    let text = file.section_by_name(".text").unwrap();
    let (text_off, text_len) = text.file_range().unwrap();
    for at in [sites.write_entry, sites.read_entry] {
        assert!(at >= text_off && at < text_off + text_len);
    }
    if data.len() == 21_529_688 {
        // Debian's etcd 3.4.23: what a separate reading of its table gave.
        assert_eq!((sites.write_entry, sites.read_entry), (0x237400, 0x2388c0));
    }

    // The entry probes sit on the stack check's jump (the kernel emulates it), a few
    // bytes in; Read's one copy to the caller is a call the kernel emulates too.
    for (entry, probe) in [
        (sites.write_entry, sites.write_probe),
        (sites.read_entry, sites.read_probe),
    ] {
        assert!(probe > entry && probe < entry + 16, "{entry:#x} {probe:#x}");
        let op = data[probe as usize];
        assert!(
            (0x70..=0x7f).contains(&op)
                || op == 0x0f && (0x80..=0x8f).contains(&data[probe as usize + 1]),
            "not a conditional jump at {probe:#x}: {op:#x}"
        );
    }
    assert_eq!(sites.read_copies.len(), 1, "{sites:#x?}");
    let call = sites.read_copies[0];
    assert_eq!(data[call as usize], 0xe8, "not a call at {call:#x}");
    assert!(call > sites.read_entry && sites.read_returns.iter().any(|&r| r > call));
}

/// The Go programs in the directories of PATH, canonical and sorted: those with an
/// ELF symbol table and those without, at most `n` of each and none over 200 MB. Only
/// their headers are read here.
fn go_programs_in_path(n: usize) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut paths: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(|entry| entry.ok()?.path().canonicalize().ok())
        .collect();
    paths.sort();
    paths.dedup();
    let (mut with, mut without) = (Vec::new(), Vec::new());
    for path in paths {
        let Ok(file) = std::fs::File::open(&path) else {
            continue;
        };
        match file.metadata() {
            Ok(m) if m.is_file() && m.len() <= 200 << 20 => {}
            _ => continue,
        }
        let cache = object::ReadCache::new(file);
        let Ok(elf) = object::File::parse(&cache) else {
            continue;
        };
        if elf.architecture() != object::Architecture::X86_64
            || elf.section_by_name(".go.buildinfo").is_none()
        {
            continue;
        }
        let list = if elf.section_by_name(".symtab").is_some() {
            &mut with
        } else {
            &mut without
        };
        if list.len() < n {
            list.push(path);
        }
    }
    (with, without)
}

/// The Go programs of this machine (Debian's etcd and etcdctl in CI): each is found,
/// and where it has an ELF symbol table, that and the function table agree.
#[test]
fn go_programs_in_path_agree_with_their_symbols() {
    let (with, without) = go_programs_in_path(3);
    if with.is_empty() {
        eprintln!("skipped the comparison with ELF symbols: no Go program with them in PATH");
    }
    for path in with.iter().chain(&without) {
        let data = std::fs::read(path).unwrap();
        let sites = match find_tls_probe_sites_in(&data) {
            Err(e @ ProbeSiteError::NotFound(_)) => {
                eprintln!("{}: {e}", path.display());
                continue;
            }
            found => found.unwrap(),
        };
        eprintln!(
            "{}: {:?} via {}",
            path.display(),
            sites.go_version,
            sites.found_by
        );
        check_sites(&data, &sites);
        let file = object::File::parse(&*data).unwrap();
        let symbols = Symbols::of(&file);
        let (table, text) = pclntab_of(&data);
        let [write, read] = table.find([WRITE, READ], text).unwrap();
        if let [Some(sym_write), Some(sym_read), _] = symbols.ranges {
            assert_eq!(sites.found_by, "ELF symbols");
            // Both name the same entries; a symbol's size leaves out the padding up to
            // the next function.
            for (sym, pcln) in [(sym_write, write.unwrap()), (sym_read, read.unwrap())] {
                assert_eq!(sym.entry, pcln.entry, "{}", path.display());
                assert!(sym.end <= pcln.end && pcln.end - sym.end < 64);
            }
        } else {
            assert_eq!(sites.found_by, ".gopclntab");
        }
    }
}

#[test]
fn a_program_not_written_in_go_is_refused() {
    let Some(data) = read_or_skip("/bin/ls") else {
        return;
    };
    let e = find_tls_probe_sites_in(&data).unwrap_err();
    assert!(matches!(e, ProbeSiteError::NotGo), "{e}");
    assert_eq!(
        e.to_string(),
        "not a Go program (no .gopclntab section and no Go symbols)"
    );
}

#[test]
fn what_is_not_an_executable_is_refused() {
    assert!(matches!(
        find_tls_probe_sites_in(b"#!/bin/sh\necho hi\n"),
        Err(ProbeSiteError::NotElf)
    ));
    assert!(matches!(
        find_tls_probe_sites_in(b""),
        Err(ProbeSiteError::NotElf)
    ));
    // An ELF header cut short.
    let e = find_tls_probe_sites_in(b"\x7fELF\x02\x01\x01\0\0\0").unwrap_err();
    assert!(matches!(e, ProbeSiteError::BadElf(_)), "{e}");

    let missing = Path::new("/nonexistent/etcd");
    let e = find_tls_probe_sites(missing).unwrap_err();
    assert!(
        e.to_string().starts_with("cannot read /nonexistent/etcd: "),
        "{e}"
    );
    let dir = tempfile::tempdir().unwrap();
    let e = find_tls_probe_sites(dir.path()).unwrap_err();
    assert!(matches!(e, ProbeSiteError::Io { .. }), "{e}");
    // Refused by its size before anything is read (the file is sparse).
    let big = dir.path().join("big");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(MAX_FILE + 1)
        .unwrap();
    let e = find_tls_probe_sites(&big).unwrap_err();
    assert!(e
        .to_string()
        .ends_with("big is larger than 2 GiB: not read as an executable"));
}

#[test]
fn another_machine_is_named() {
    let Some(mut data) = read_or_skip("/bin/ls") else {
        return;
    };
    // e_machine = EM_AARCH64.
    data[18..20].copy_from_slice(&183u16.to_le_bytes());
    let e = find_tls_probe_sites_in(&data).unwrap_err();
    assert_eq!(
        e.to_string(),
        "not an x86-64 executable (aarch64): TLS plaintext capture supports x86-64 only"
    );
}

#[test]
fn go_releases_before_1_17_are_refused() {
    let e = check_abi(Some("go1.16.15"), Some(Layout::Go116)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "built with go1.16.15, which passes arguments on the stack; \
         TLS plaintext capture needs Go 1.17 or newer (register ABI)"
    );
    let e = check_abi(None, Some(Layout::Go12)).unwrap_err();
    assert!(e
        .to_string()
        .starts_with("built with Go 1.2–1.15 (by its .gopclntab layout)"));
    assert!(check_abi(Some("go1.17"), Some(Layout::Go116)).is_ok());
    assert!(check_abi(Some("go1.19.8"), None).is_ok());
    // Unknown: left to the prologue check.
    assert!(check_abi(None, Some(Layout::Go116)).is_ok());
    assert!(check_abi(Some("devel +abcdef"), None).is_ok());
}

#[test]
fn version_strings() {
    assert_eq!(go1_minor("go1.19.8"), Some(19));
    assert_eq!(go1_minor("go1.21rc2"), Some(21));
    assert_eq!(go1_minor("devel go1.23-abcdef Tue"), Some(23));
    assert_eq!(go1_minor("go1.22.3 X:boringcrypto"), Some(22));
    assert_eq!(go1_minor("go1."), None);
    assert_eq!(go1_minor("1.19"), None);
}

#[test]
fn error_messages_are_one_line() {
    let errors = [
        ProbeSiteError::NotElf,
        ProbeSiteError::BadElf("x".into()),
        ProbeSiteError::NotX86_64("i386".into()),
        ProbeSiteError::NotGo,
        ProbeSiteError::StackAbi("go1.16".into()),
        ProbeSiteError::UnknownPclntab(0x1234),
        ProbeSiteError::BadPclntab("x"),
        ProbeSiteError::NotFound(READ),
        ProbeSiteError::NotInCode {
            name: READ,
            vaddr: 1,
        },
        ProbeSiteError::BadCode {
            name: READ,
            vaddr: 1,
            why: "x".into(),
        },
        ProbeSiteError::NoRegisterAbi {
            name: READ,
            vaddr: 1,
        },
        ProbeSiteError::NoReturns(READ),
        ProbeSiteError::TooLarge { path: "/x".into() },
    ];
    for e in errors {
        let text = e.to_string();
        assert!(!text.contains('\n') && !text.is_empty(), "{text}");
    }
    assert_eq!(
        ProbeSiteError::UnknownPclntab(0xfffffff2).to_string(),
        "unknown .gopclntab layout (magic 0xfffffff2)"
    );
    assert_eq!(
        ProbeSiteError::NotFound(READ).to_string(),
        "crypto/tls.(*Conn).Read not found: this program does not use Go's crypto/tls"
    );
}

/// A function table of `layout` naming `funcs` (name, entry offset from the text
/// start), each function running to the next, the last one 0x40 bytes long.
fn synthetic_pclntab(layout: Layout, ptr: usize, text: u64, funcs: &[(&str, u64)]) -> Vec<u8> {
    let magic: u32 = match layout {
        Layout::Go12 => 0xfffffffb,
        Layout::Go116 => 0xfffffffa,
        Layout::Go118 => 0xfffffff0,
        Layout::Go120 => 0xfffffff1,
    };
    let word = |out: &mut Vec<u8>, v: u64| match ptr {
        4 => out.extend_from_slice(&(v as u32).to_le_bytes()),
        _ => out.extend_from_slice(&v.to_le_bytes()),
    };
    let mut out = magic.to_le_bytes().to_vec();
    out.extend_from_slice(&[0, 0, 1, ptr as u8]);
    let words = match layout {
        Layout::Go12 => 1,
        Layout::Go116 => 7,
        _ => 8,
    };
    let header = 8 + words * ptr;
    // Names right after the header, then the function table and the records.
    let mut names = Vec::new();
    let mut name_offs = Vec::new();
    for (name, _) in funcs {
        name_offs.push(names.len() as u64);
        names.extend_from_slice(name.as_bytes());
        names.push(0);
    }
    let relative = layout.relative_entries();
    let field = if relative { 4 } else { ptr };
    let (names_at, pcln_at) = match layout {
        // Go 1.2: the function table must follow nfunc; names go after the records.
        Layout::Go12 => (0, 8 + ptr),
        _ => (header, header + names.len()),
    };
    let functab_len = (2 * funcs.len() + 1) * field;
    let entry_size = if relative { 4 } else { ptr };
    let record_len = entry_size + 4 + 32;
    let go12_names_at = pcln_at + functab_len + funcs.len() * record_len;
    let names_base = if layout == Layout::Go12 {
        go12_names_at
    } else {
        names_at
    };
    match layout {
        Layout::Go12 => word(&mut out, funcs.len() as u64),
        Layout::Go116 => {
            for w in [funcs.len(), 1, names_at, pcln_at, pcln_at, pcln_at, pcln_at] {
                word(&mut out, w as u64);
            }
        }
        _ => {
            for w in [funcs.len() as u64, 1, text, names_at as u64] {
                word(&mut out, w);
            }
            for _ in 0..4 {
                word(&mut out, pcln_at as u64);
            }
            // Everything up to the function table is the names.
        }
    }
    if layout != Layout::Go12 {
        out.extend_from_slice(&names);
    }
    assert_eq!(out.len(), pcln_at);
    let entry_value = |rel: u64| if relative { rel } else { text + rel };
    let put = |out: &mut Vec<u8>, v: u64| {
        if field == 4 {
            out.extend_from_slice(&(v as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&v.to_le_bytes());
        }
    };
    // Record offsets are relative to the function table (the table's start for 1.2).
    let record_base = if layout == Layout::Go12 { 0 } else { pcln_at };
    for (i, (_, rel)) in funcs.iter().enumerate() {
        put(&mut out, entry_value(*rel));
        put(
            &mut out,
            (pcln_at + functab_len + i * record_len - record_base) as u64,
        );
    }
    put(&mut out, entry_value(funcs.last().unwrap().1 + 0x40));
    for (i, (_, rel)) in funcs.iter().enumerate() {
        if relative {
            out.extend_from_slice(&(*rel as u32).to_le_bytes());
        } else {
            word(&mut out, text + rel);
        }
        let name_off = if layout == Layout::Go12 {
            names_base as u64
        } else {
            0
        } + name_offs[i];
        out.extend_from_slice(&(name_off as u32).to_le_bytes());
        out.extend_from_slice(&[0; 32]);
    }
    if layout == Layout::Go12 {
        assert_eq!(out.len(), names_base);
        out.extend_from_slice(&names);
    }
    out
}

const LAYOUTS: [Layout; 4] = [Layout::Go12, Layout::Go116, Layout::Go118, Layout::Go120];

#[test]
fn synthetic_tables_of_every_layout_resolve_names() {
    let text = 0x40_1000;
    let funcs = [
        ("main.main", 0x0),
        (READ, 0x80),
        ("crypto/tls.(*Conn).Readx", 0x100),
    ];
    for layout in LAYOUTS {
        for ptr in [8, 4] {
            let data = synthetic_pclntab(layout, ptr, text, &funcs);
            let table = Pclntab::parse(&data).unwrap();
            assert_eq!(table.layout, layout);
            let found = table
                .find(["main.main", READ, "crypto/tls.(*Conn).Rea", WRITE], text)
                .unwrap();
            let range = |from, to| {
                Some(FuncRange {
                    entry: text + from,
                    end: text + to,
                })
            };
            assert_eq!(
                found,
                [range(0, 0x80), range(0x80, 0x100), None, None],
                "{layout:?} ptr {ptr}"
            );
            assert_eq!(
                table.find(["crypto/tls.(*Conn).Readx"], text).unwrap(),
                [range(0x100, 0x140)]
            );
        }
    }
}

#[test]
fn a_table_inside_a_larger_section_is_located() {
    let data = synthetic_pclntab(Layout::Go120, 8, 0x1000, &[(READ, 0)]);
    let mut rng = XorShift(7);
    let mut section = rng.bytes(40);
    // A stray magic with no table behind it comes first.
    section[8..12].copy_from_slice(&0xfffffff1u32.to_le_bytes());
    section.extend_from_slice(&data);
    // The section starts 8 past an aligned address: the table at 40 is aligned.
    assert_eq!(locate(&section, 0x2008), Some(40));
    assert_eq!(locate(&section[..40], 0x2008), None);
    assert_eq!(locate(&[], 0), None);
}

#[test]
fn a_record_that_disagrees_with_its_row_is_malformed() {
    let mut data = synthetic_pclntab(Layout::Go118, 8, 0x1000, &[("main.main", 0), (READ, 0x40)]);
    let table = Pclntab::parse(&data).unwrap();
    let record = table.record(1).unwrap();
    data[record] ^= 1;
    let table = Pclntab::parse(&data).unwrap();
    assert_eq!(
        table.find([READ], 0x1000),
        Err(PclntabError::Malformed(
            "function record disagrees with its row"
        ))
    );
}

#[test]
fn damaged_tables_never_panic() {
    // The real table where there is one, else a synthetic one of each layout.
    let etcd = read_or_skip(ETCD);
    let mut tables: Vec<(Vec<u8>, u64)> = Vec::new();
    if let Some(data) = &etcd {
        let file = object::File::parse(&**data).unwrap();
        let section = file.section_by_name(".gopclntab").unwrap();
        let (_, text) = pclntab_of(data);
        tables.push((section.data().unwrap().to_vec(), text));
    }
    let funcs = [("main.main", 0), (WRITE, 0x40), (READ, 0x80)];
    for layout in LAYOUTS {
        tables.push((synthetic_pclntab(layout, 8, 0x1000, &funcs), 0x1000));
    }
    let mut rng = XorShift(0x5eed);
    let lookup = |data: &[u8], text: u64| {
        if let Ok(table) = Pclntab::parse(data) {
            let _ = table.find([WRITE, READ], text);
        }
    };
    for (mut data, text) in tables {
        for _ in 0..100 {
            let cut = rng.index(data.len().min(4096)) + rng.index(2) * rng.index(data.len());
            lookup(&data[..cut.min(data.len())], text);
        }
        // Flips where the lookup reads: the header, the function table, anywhere.
        let functab = Pclntab::parse(&data).unwrap().functab;
        let rows = (data.len() - functab).min(1 << 20);
        for round in 0..300 {
            let at = match round % 3 {
                0 => rng.index(72),
                1 => functab + rng.index(rows),
                _ => rng.index(data.len()),
            };
            let flip = 1u8 << rng.index(8);
            data[at] ^= flip;
            lookup(&data, text);
            data[at] ^= flip;
        }
    }
}

#[test]
fn build_info_versions() {
    let mut inline = b"\xff Go buildinf:\x08\x02".to_vec();
    inline.resize(32, 0);
    inline.push(8);
    inline.extend_from_slice(b"go1.21.5");
    inline.push(0);
    let none = |_: u64, _: usize| -> Option<&'static [u8]> { None };
    assert_eq!(go_version(&inline, none), Some(Some("go1.21.5".into())));
    // A length past the end, or unprintable bytes: no version, still Go.
    let mut cut = inline.clone();
    cut.truncate(36);
    assert_eq!(go_version(&cut, none), Some(None));
    inline[33] = 0x07;
    assert_eq!(go_version(&inline, none), Some(None));
    assert_eq!(go_version(b"\x7fELF", none), None);

    // Before Go 1.18: a pointer to a string header (data, len) elsewhere.
    let mut old = b"\xff Go buildinf:\x08\x00".to_vec();
    old.extend_from_slice(&0x5000u64.to_le_bytes());
    old.extend_from_slice(&0u64.to_le_bytes());
    let mut header = 0x6000u64.to_le_bytes().to_vec();
    header.extend_from_slice(&9u64.to_le_bytes());
    let memory = |vaddr: u64, len: usize| -> Option<&[u8]> {
        match vaddr {
            0x5000 => header.get(..len),
            0x6000 => b"go1.15.15".get(..len),
            _ => None,
        }
    };
    assert_eq!(go_version(&old, memory), Some(Some("go1.15.15".into())));
    old[15] = 1; // big-endian pointers: not read
    assert_eq!(go_version(&old, memory), Some(None));
}

#[test]
fn build_info_and_code_from_random_bytes_never_panic() {
    let mut rng = XorShift(99);
    let memory = |vaddr: u64, len: usize| -> Option<&'static [u8]> {
        static JUNK: [u8; 64] = [0x41; 64];
        JUNK.get(vaddr as usize % 64..)?.get(..len)
    };
    for _ in 0..2000 {
        let mut data = b"\xff Go buildinf:".to_vec();
        let n = rng.index(64);
        data.extend_from_slice(&rng.bytes(n));
        let _ = go_version(&data, memory);
        let n = rng.index(256);
        let code = rng.bytes(n);
        let _ = disasm::scan(&code, rng.next());
    }
}

#[test]
fn code_scan_finds_every_return_and_the_stack_check() {
    #[rustfmt::skip]
    let code = [
        0x49, 0x3b, 0x66, 0x10,       // cmp rsp, [r14+0x10]
        0x76, 0x05,                   // jbe +5
        0x31, 0xc0,                   // xor eax, eax
        0xc3,                         // ret
        0xc2, 0x08, 0x00,             // ret 8
        0xe8, 0, 0, 0, 0,             // call
        0xc3,                         // ret
        0xcc, 0xcc,                   // padding
    ];
    let found = disasm::scan(&code, 0x1000).unwrap();
    assert_eq!(found.returns, [0x1008, 0x1009, 0x1011]);
    assert!(found.register_abi_stack_check);

    // Go 1.16 and older: g from thread-local storage, the guard through rcx.
    #[rustfmt::skip]
    let stack_abi = [
        0x64, 0x48, 0x8b, 0x0c, 0x25, 0xf8, 0xff, 0xff, 0xff, // mov rcx, fs:[-8]
        0x48, 0x3b, 0x61, 0x10,                               // cmp rsp, [rcx+0x10]
        0xc3,
    ];
    assert!(
        !disasm::scan(&stack_abi, 0)
            .unwrap()
            .register_abi_stack_check
    );

    assert!(disasm::scan(&[0xcc, 0xc3], 0)
        .unwrap_err()
        .contains("padding"));
    let cut = disasm::scan(&[0x49, 0x3b, 0x66], 0).unwrap_err();
    assert!(cut.contains("cut by the function's end"), "{cut}");
    let invalid = disasm::scan(&[0x90, 0x06, 0xc3], 0).unwrap_err();
    assert_eq!(invalid, "an invalid instruction at +0x1");
    // Addresses that wrap around.
    assert!(disasm::scan(&[0x90, 0x06], u64::MAX).is_err());
}

#[test]
fn damaged_small_elf_files_never_panic() {
    let Some(mut data) = read_or_skip("/bin/ls") else {
        return;
    };
    let mut rng = XorShift(3);
    for _ in 0..100 {
        let cut = rng.index(data.len());
        let _ = find_tls_probe_sites_in(&data[..cut]);
    }
    for _ in 0..300 {
        // The ELF and program headers, or anywhere.
        let at = if rng.index(2) == 0 {
            rng.index(1024)
        } else {
            rng.index(data.len())
        };
        let byte = rng.next() as u8;
        let old = std::mem::replace(&mut data[at], byte);
        let _ = find_tls_probe_sites_in(&data);
        data[at] = old;
    }
}

/// Debian's etcd with `edit` applied to a copy, and the lookup's error.
fn etcd_edited(
    edit: impl FnOnce(&mut Vec<u8>, &object::File<'_>, &TlsProbeSites),
) -> Option<ProbeSiteError> {
    let data = read_or_skip(ETCD)?;
    let sites = find_tls_probe_sites_in(&data).unwrap();
    let mut copy = data.clone();
    edit(&mut copy, &object::File::parse(&*data).unwrap(), &sites);
    Some(find_tls_probe_sites_in(&copy).unwrap_err())
}

fn section_offset(file: &object::File<'_>, name: &str) -> usize {
    file.section_by_name(name).unwrap().file_range().unwrap().0 as usize
}

fn find_bytes(data: &[u8], needle: &[u8]) -> usize {
    data.windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[test]
fn edited_etcd_gives_each_error() {
    // Read's name changed in the name table: as a program without crypto/tls.
    let e = etcd_edited(|data, file, _| {
        let names = section_offset(file, ".gopclntab");
        let at = names + find_bytes(&data[names..], b"crypto/tls.(*Conn).Read\0");
        data[at + 19] = b'X';
    });
    if let Some(e) = e {
        assert_eq!(
            e.to_string(),
            "crypto/tls.(*Conn).Read not found: this program does not use Go's crypto/tls"
        );
    }
    // An unknown magic.
    let e = etcd_edited(|data, file, _| {
        let at = section_offset(file, ".gopclntab");
        data[at..at + 4].copy_from_slice(&0xfffffff7u32.to_le_bytes());
    });
    if let Some(e) = e {
        assert_eq!(
            e.to_string(),
            "unknown .gopclntab layout (magic 0xfffffff7)"
        );
    }
    // The version of a release that passes arguments on the stack.
    let e = etcd_edited(|data, file, _| {
        let at = section_offset(file, ".go.buildinfo");
        let at = at + find_bytes(&data[at..], b"go1.19.8");
        data[at..at + 8].copy_from_slice(b"go1.16.8");
    });
    if let Some(e) = e {
        assert!(
            matches!(e, ProbeSiteError::StackAbi(ref v) if v == "go1.16.8"),
            "{e}"
        );
    }
    // Read's stack check replaced by no-ops: not code the probes understand.
    let e = etcd_edited(|data, _, sites| {
        let at = sites.read_entry as usize;
        data[at..at + 4].copy_from_slice(&[0x90; 4]);
    });
    if let Some(e) = e {
        assert!(
            matches!(e, ProbeSiteError::NoRegisterAbi { name: READ, .. }),
            "{e}"
        );
    }
}
