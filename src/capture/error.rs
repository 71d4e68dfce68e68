//! Why a capture file could not be opened at all. Damage inside an otherwise readable
//! file is not an error: it is reported as [`crate::capture::Damage`] beside the events.

use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// A capture file that cannot be read: not ours, too new, a broken header, or I/O.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// The file does not start with the capture magic.
    #[error("{} is not an etcd-trace capture file", path.display())]
    NotACapture { path: PathBuf },

    /// The file is a capture, but of a format version this build cannot read.
    #[error(
        "{}: capture format version {found} is not supported: this build of etcd-trace \
         reads format versions {} to {supported}; upgrade etcd-trace to read this file",
        path.display(),
        super::header::OLDEST_FORMAT_VERSION
    )]
    UnsupportedVersion {
        path: PathBuf,
        found: u32,
        supported: u32,
    },

    /// The preamble (header length, header bytes or its checksum) is damaged, so the
    /// recording's context (clock offset, configuration) is unknown.
    #[error("{}: the capture header is corrupt: {reason}", path.display())]
    CorruptHeader { path: PathBuf, reason: String },

    /// Several files that cannot be read as one capture (see `super::set`).
    #[error("{reason}")]
    Set { reason: String },

    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}
