//! HPACK (RFC 7541), decoded passively: etcd-trace reads both directions of captured
//! HTTP/2 connections, often joined mid-connection or with header blocks lost, so this
//! decoder reports fields it cannot resolve as unknown instead of failing, and tracks how
//! far its dynamic table can be trusted. Existing crates either keep their HPACK private
//! or fail on an unknown index, hence our own.
//!
//! Use one [`HpackDecoder`] per connection direction. `decoder` holds the state rules,
//! `table` the static and dynamic tables, `huffman` and `integer` the primitive codings.

pub mod decoder;
pub mod huffman;
pub mod integer;
pub mod table;

pub use decoder::{
    FieldSource, FieldText, HeaderBlock, HeaderField, HpackDecoder, HpackError, Indexing,
    TableState, DEFAULT_MAX_HEADER_LIST_SIZE,
};
pub use huffman::HuffmanError;
pub use integer::IntegerError;
pub use table::{DynamicEntry, DynamicTable, DEFAULT_MAX_TABLE_SIZE};
