//! Record-time redaction of etcd credentials in captured client traffic.
//!
//! Why it exists: capture files travel (bug reports, laptops, CI fixtures), and a password
//! or a live auth token in one hands out access to the cluster it came from. Analyses can
//! hide secrets in their output, but only the recorder can keep them out of the file. So
//! the recorder passes its packets and the TLS plaintext it takes in etcd through a
//! [`SecretScrubber`], which overwrites in place
//! the bytes of the `token` (and `authorization`) request header and of the password and
//! token fields of etcd's auth calls. Lengths never change, so every decoder downstream
//! (TCP, HTTP/2, HPACK tables, gRPC framing, protobuf) still sees a well-formed stream;
//! the secrets read as `*` (or `0`s and friends inside Huffman-coded header values).
//!
//! Equally important is saying what it could not do: connections that were open before
//! recording (unknown HPACK state and frame boundaries), directions with bytes lost (a
//! hole that did not fill in time: reordered bytes are held until it does), and
//! compressed auth messages are counted in a [`ScrubReport`].
//!
//! `scrubber` follows TCP streams and TLS plaintext and holds events, `frames` walks
//! HTTP/2 frames, `header_block` scrubs HPACK blocks, `message` scrubs the auth calls'
//! protobuf messages.

#![forbid(unsafe_code)]

mod frames;
mod header_block;
mod message;
mod scrubber;

pub use crate::capture::{ScrubReport, TlsScrubReport};
pub use scrubber::{SecretScrubber, MAX_HOLD_NS};

impl ScrubReport {
    fn add_message_counts(&mut self, counts: message::MessageCounts) {
        self.fields_redacted += counts.fields_redacted;
        self.compressed_messages_blanked += counts.compressed_blanked;
        self.unparsable_messages_blanked += counts.unparsable_blanked;
    }
}

#[cfg(test)]
mod tests;
