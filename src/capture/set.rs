//! A rotated recording read as one capture. `record --rotate-size/--rotate-time` cuts
//! one recording into files named by [`rotated_path`]; a user hands them over as files
//! (in any order) or as their directory, and every analysis must see one stream of
//! events, so that a connection or a WAL file that spans two files decodes as one.
//! Files that are not one recording (another host, boot, recorder start or
//! configuration) or whose times overlap are refused, with what to do instead: reading
//! them as one would invent connections and mix members.

use std::path::{Path, PathBuf};

use super::error::CaptureError;
use super::header::Header;
use super::reader::CaptureReader;

/// `capture.etr` → `capture-0003.etr`: the name of file `n` of a rotated recording
/// (the recorder writes them, the follower of a live recording looks for the next).
pub fn rotated_path(base: &Path, n: u32) -> PathBuf {
    let stem = base
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "capture".into());
    let name = match base.extension() {
        Some(ext) => format!("{stem}-{n:04}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{n:04}"),
    };
    base.with_file_name(name)
}

/// The number of a rotated file's name (`capture-0003.etr` → 3) and the base it was
/// made from; `None` for a name [`rotated_path`] does not make.
pub fn rotation_number(path: &Path) -> Option<(PathBuf, u32)> {
    let stem = path.file_stem()?.to_str()?;
    let (base_stem, digits) = stem.rsplit_once('-')?;
    if digits.len() < 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = digits.parse().ok()?;
    let name = match path.extension() {
        Some(ext) => format!("{base_stem}.{}", ext.to_string_lossy()),
        None => base_stem.to_string(),
    };
    Some((path.with_file_name(name), n))
}

/// The capture files a user named: each file as given, a directory as its `.etr`
/// files in name order.
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, CaptureError> {
    let mut files = Vec::new();
    for path in paths {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let io_err = |source| CaptureError::Io {
            path: path.clone(),
            source,
        };
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "etr"))
            .collect();
        if found.is_empty() {
            return Err(CaptureError::Set {
                reason: format!(
                    "{} holds no capture files (*.etr): name the files, or the directory \
                     `record --rotate-size/--rotate-time` wrote them to",
                    path.display()
                ),
            });
        }
        found.sort();
        files.extend(found);
    }
    Ok(files)
}

/// Open files (or directories of files) as one capture, in time order. One file opens
/// as itself.
pub fn open_set(paths: &[PathBuf]) -> Result<CaptureReader, CaptureError> {
    let files = expand(paths)?;
    let mut readers = files
        .iter()
        .map(CaptureReader::open)
        .collect::<Result<Vec<_>, _>>()?;
    if readers.len() == 1 {
        return Ok(readers.remove(0));
    }
    if let Some(r) = readers.iter().find(|r| r.packet_file().is_some()) {
        return Err(CaptureError::Set {
            reason: format!(
                "{} is a packet capture: pcap and pcapng files are read one at a time (join \
                 them first, e.g. with mergecap)",
                r.path().display()
            ),
        });
    }
    // Time order: by first event; a file without events by its rotation number.
    readers.sort_by_key(|r| {
        (
            r.index().time_range().map(|(first, _)| first),
            rotation_number(r.path()).map(|(_, n)| n),
        )
    });
    let first = &readers[0];
    for r in &readers[1..] {
        if let Some(why) = not_one_recording(first.header(), r.header()) {
            return Err(CaptureError::Set {
                reason: format!(
                    "{} and {} are not one recording ({why}): analyse them one at a time, \
                     or `etcd-trace merge` captures of different hosts taken at the same time",
                    first.path().display(),
                    r.path().display()
                ),
            });
        }
        if r.format() != first.format() {
            return Err(CaptureError::Set {
                reason: format!(
                    "{} and {} are not one recording (capture formats {} and {}): analyse \
                     them one at a time",
                    first.path().display(),
                    r.path().display(),
                    first.format_version(),
                    r.format_version()
                ),
            });
        }
    }
    let with_events: Vec<_> = readers
        .iter()
        .filter_map(|r| r.index().time_range().map(|range| (r, range)))
        .collect();
    for pair in with_events.windows(2) {
        let [(a, (a_first, a_last)), (b, (b_first, b_last))] = pair else {
            continue;
        };
        if b_first <= a_last {
            return Err(CaptureError::Set {
                reason: format!(
                    "{} and {} overlap in time ({}–{} and {}–{} ns): the files of one \
                     rotated recording follow one another; was a file given twice, or \
                     copied?",
                    a.path().display(),
                    b.path().display(),
                    a_first,
                    a_last,
                    b_first,
                    b_last
                ),
            });
        }
    }
    let later = readers.split_off(1);
    let mut head = readers.remove(0);
    head.chain(later);
    Ok(head)
}

/// Why two headers are not of one recording, if they are not: the files of one
/// rotated recording share every field but the processes running when each was opened.
pub fn not_one_recording(a: &Header, b: &Header) -> Option<String> {
    if a.hostname != b.hostname {
        return Some(format!("hosts {} and {}", a.hostname, b.hostname));
    }
    if a.kernel_release != b.kernel_release || a.clock_offset_ns != b.clock_offset_ns {
        return Some("recorded in different boots".into());
    }
    if a.started_wall_ns != b.started_wall_ns {
        return Some("recordings started at different times".into());
    }
    if a.recorder_version != b.recorder_version || a.config != b.config {
        return Some("different recorder versions or configurations".into());
    }
    if a.hosts != b.hosts || a.interfaces != b.interfaces {
        return Some("different hosts or interfaces".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_keep_the_extension_and_read_back() {
        let made = rotated_path(Path::new("/tmp/cap.etr"), 3);
        assert_eq!(made, PathBuf::from("/tmp/cap-0003.etr"));
        assert_eq!(
            rotation_number(&made),
            Some((PathBuf::from("/tmp/cap.etr"), 3))
        );
        let bare = rotated_path(Path::new("cap"), 12);
        assert_eq!(bare, PathBuf::from("cap-0012"));
        assert_eq!(rotation_number(&bare), Some((PathBuf::from("cap"), 12)));
        assert_eq!(rotation_number(Path::new("my-cap.etr")), None);
    }
}
