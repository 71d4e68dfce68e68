//! HPACK (RFC 7541), decoded passively: etcd-trace reads both directions of captured
//! HTTP/2 connections, often joined mid-connection or with header blocks lost, so this
//! decoder reports fields it cannot resolve as unknown instead of failing, and tracks how
//! far its dynamic table can be trusted. Existing crates either keep their HPACK private
//! or fail on an unknown index, hence our own.
//!
//! `huffman` and `integer` hold the primitive codings.

pub mod huffman;
pub mod integer;

pub use huffman::HuffmanError;
pub use integer::IntegerError;
