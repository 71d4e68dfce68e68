//! The capture file: the product's contract with its users, treated like a database file
//! format. Events, the header, the block framing, the index, and recovery of files whose
//! recorder died before writing the index.

pub mod event;

pub use event::*;
