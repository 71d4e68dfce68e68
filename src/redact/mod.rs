//! Record-time redaction of etcd credentials in captured client traffic.
//!
//! Why it exists: capture files travel (bug reports, laptops, CI fixtures), and a password
//! or a live auth token in one hands out access to the cluster it came from. Analyses can
//! hide secrets in their output, but only the recorder can keep them out of the file. So
//! the recorder passes its packets through a [`SecretScrubber`], which overwrites in place
//! the bytes of the `token` (and `authorization`) request header and of the password and
//! token fields of etcd's auth calls. Lengths never change, so every decoder downstream
//! (TCP, HTTP/2, HPACK tables, gRPC framing, protobuf) still sees a well-formed stream;
//! the secrets read as `*` (or `0`s and friends inside Huffman-coded header values).
//!
//! Equally important is saying what it could not do: connections that were open before
//! recording (unknown HPACK state and frame boundaries), directions with lost or
//! reordered bytes, and compressed auth messages are counted in a [`ScrubReport`].
//!
//! `scrubber` follows TCP and holds packets, `frames` walks HTTP/2 frames, `header_block`
//! scrubs HPACK blocks, `message` scrubs the auth calls' protobuf messages.

mod frames;
mod header_block;
mod message;
mod scrubber;

use std::fmt;

pub use scrubber::SecretScrubber;

/// What a [`SecretScrubber`] redacted, and what it had to let through.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ScrubReport {
    /// `token` / `authorization` header values overwritten.
    pub header_values_redacted: u64,
    /// Header values under a name we could not resolve that looked like a token, and
    /// were overwritten on suspicion.
    pub header_values_suspected: u64,
    /// Header blocks that could not be parsed to their end; their rest was overwritten.
    pub header_blocks_unparsable: u64,
    /// Password, hashed-password and token fields of auth messages overwritten.
    pub fields_redacted: u64,
    /// Compressed auth messages: not editable field by field, so blanked whole.
    pub compressed_messages_blanked: u64,
    /// Auth messages too large or not protobuf, blanked whole.
    pub unparsable_messages_blanked: u64,
    /// Connections already open when recording began: passed unscrubbed.
    pub midstream_connections: u64,
    /// Connection directions given up after a gap, reordering, a cut payload or a frame
    /// we could not follow: the rest of them passed unscrubbed.
    pub directions_given_up: u64,
    /// Connection directions that are not cleartext HTTP/2 (peer traffic, TLS).
    pub not_http2_directions: u64,
    /// Connections beyond the number followed at once: passed unscrubbed.
    pub connections_over_limit: u64,
    /// Packets with payload that passed without scrubbing (mid-stream, given up).
    pub unscrubbed_packets: u64,
}

impl ScrubReport {
    fn add_message_counts(&mut self, counts: message::MessageCounts) {
        self.fields_redacted += counts.fields_redacted;
        self.compressed_messages_blanked += counts.compressed_blanked;
        self.unparsable_messages_blanked += counts.unparsable_blanked;
    }

    /// Whether some client traffic may have kept a secret.
    pub fn incomplete(&self) -> bool {
        self.unscrubbed_packets > 0 || self.connections_over_limit > 0
    }
}

impl fmt::Display for ScrubReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "redacted {} token headers, {} password/token fields",
            self.header_values_redacted + self.header_values_suspected,
            self.fields_redacted
        )?;
        let blanked = self.compressed_messages_blanked
            + self.unparsable_messages_blanked
            + self.header_blocks_unparsable;
        if blanked > 0 {
            write!(f, ", blanked {blanked} whole messages/header blocks")?;
        }
        if self.incomplete() {
            write!(
                f,
                "; NOT scrubbed: {} packets ({} connections open before recording, {} \
                 directions given up after lost or reordered bytes, {} connections over \
                 the limit)",
                self.unscrubbed_packets,
                self.midstream_connections,
                self.directions_given_up,
                self.connections_over_limit
            )?;
        }
        if self.not_http2_directions > 0 {
            write!(
                f,
                "; {} non-HTTP/2 directions (peer traffic, TLS) kept as is",
                self.not_http2_directions
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
