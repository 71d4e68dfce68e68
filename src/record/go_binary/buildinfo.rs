//! The Go release that built a program, from its `.go.buildinfo` section: whether
//! function arguments travel in registers (Go 1.17+ on x86-64) decides whether the TLS
//! probes can read them.
#![forbid(unsafe_code)]

const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// The header: magic, pointer size, flags, then two pointers (before Go 1.18).
const HEADER: usize = 32;
/// Flags: big-endian pointers; the strings follow the header (Go 1.18+).
const FLAG_BIG_ENDIAN: u8 = 1;
const FLAG_INLINE: u8 = 2;
/// Longer than any Go version string ("go1.22.3 X:boringcrypto" and the like).
const MAX_VERSION: usize = 256;

/// The version string ("go1.19.8"), when the section has the build-info magic:
/// `None` when it does not, `Some(None)` when the version cannot be read.
/// `read` gives `len` bytes at a virtual address (for the pointers before Go 1.18).
pub fn go_version<'m>(
    section: &[u8],
    read: impl Fn(u64, usize) -> Option<&'m [u8]>,
) -> Option<Option<String>> {
    if !section.starts_with(MAGIC) || section.len() < HEADER {
        return None;
    }
    let (ptr_size, flags) = (usize::from(section[14]), section[15]);
    if flags & FLAG_INLINE != 0 {
        return Some(inline_string(&section[HEADER..]).and_then(printable));
    }
    if flags & FLAG_BIG_ENDIAN != 0 || !matches!(ptr_size, 4 | 8) {
        return Some(None);
    }
    // A pointer to a Go string header (data pointer, length) elsewhere in the data.
    let version = word(section, 16, ptr_size)
        .and_then(|header| read(header, 2 * ptr_size))
        .and_then(|header| {
            Some((
                word(header, 0, ptr_size)?,
                word(header, ptr_size, ptr_size)?,
            ))
        })
        .and_then(|(at, len)| {
            let len = usize::try_from(len).ok().filter(|&n| n <= MAX_VERSION)?;
            read(at, len)
        })
        .and_then(printable);
    Some(version)
}

fn word(data: &[u8], at: usize, size: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(size)?)?;
    Some(match size {
        4 => u64::from(u32::from_le_bytes(bytes.try_into().ok()?)),
        _ => u64::from_le_bytes(bytes.try_into().ok()?),
    })
}

/// A length as a varint, then that many bytes.
fn inline_string(data: &[u8]) -> Option<&[u8]> {
    let mut len = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        len |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let len = usize::try_from(len).ok().filter(|&n| n <= MAX_VERSION)?;
            return data.get(i + 1..(i + 1).checked_add(len)?);
        }
    }
    None
}

fn printable(bytes: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(bytes).ok()?;
    (!text.is_empty() && text.chars().all(|c| c.is_ascii_graphic() || c == ' '))
        .then(|| text.to_owned())
}

/// The Go 1 minor release of a version string: 19 for "go1.19.8", 21 for "go1.21rc2"
/// or "devel go1.21-abcdef".
pub fn go1_minor(version: &str) -> Option<u32> {
    let at = version.find("go1.")?;
    let digits = version[at + 4..]
        .bytes()
        .take_while(u8::is_ascii_digit)
        .count();
    version[at + 4..at + 4 + digits].parse().ok()
}
