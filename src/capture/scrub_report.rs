//! What redaction did to a capture's packets, kept in the capture itself (format 2 on):
//! whoever opens a file later, perhaps attached to a bug report, can see whether secrets
//! may have passed unscrubbed, not only the person who watched the recorder stop.

use std::fmt;

use bincode::{Decode, Encode};
use serde::Serialize;

/// What the recorder's secret scrubber redacted, and what it had to let through.
#[derive(Debug, Default, Clone, PartialEq, Eq, Encode, Decode, Serialize)]
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
    /// What happened after `earlier`, a report the same scrubber gave before: the share
    /// of one file when a recording rotates.
    pub fn since(&self, earlier: &ScrubReport) -> ScrubReport {
        ScrubReport {
            header_values_redacted: self
                .header_values_redacted
                .saturating_sub(earlier.header_values_redacted),
            header_values_suspected: self
                .header_values_suspected
                .saturating_sub(earlier.header_values_suspected),
            header_blocks_unparsable: self
                .header_blocks_unparsable
                .saturating_sub(earlier.header_blocks_unparsable),
            fields_redacted: self.fields_redacted.saturating_sub(earlier.fields_redacted),
            compressed_messages_blanked: self
                .compressed_messages_blanked
                .saturating_sub(earlier.compressed_messages_blanked),
            unparsable_messages_blanked: self
                .unparsable_messages_blanked
                .saturating_sub(earlier.unparsable_messages_blanked),
            midstream_connections: self
                .midstream_connections
                .saturating_sub(earlier.midstream_connections),
            directions_given_up: self
                .directions_given_up
                .saturating_sub(earlier.directions_given_up),
            not_http2_directions: self
                .not_http2_directions
                .saturating_sub(earlier.not_http2_directions),
            connections_over_limit: self
                .connections_over_limit
                .saturating_sub(earlier.connections_over_limit),
            unscrubbed_packets: self
                .unscrubbed_packets
                .saturating_sub(earlier.unscrubbed_packets),
        }
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
mod tests {
    use super::*;

    #[test]
    fn a_file_gets_its_own_share() {
        let earlier = ScrubReport {
            header_values_redacted: 2,
            unscrubbed_packets: 5,
            ..ScrubReport::default()
        };
        let now = ScrubReport {
            header_values_redacted: 3,
            unscrubbed_packets: 5,
            fields_redacted: 1,
            ..ScrubReport::default()
        };
        let share = now.since(&earlier);
        assert_eq!(share.header_values_redacted, 1);
        assert_eq!(share.fields_redacted, 1);
        assert_eq!(share.unscrubbed_packets, 0);
        assert!(!share.incomplete());
        assert!(now.incomplete());
    }

    #[test]
    fn the_summary_counts_each_blanked_message_once() {
        let report = ScrubReport {
            compressed_messages_blanked: 1,
            unparsable_messages_blanked: 2,
            header_blocks_unparsable: 4,
            ..ScrubReport::default()
        };
        assert!(report.to_string().contains("blanked 7 whole"), "{report}");
    }
}
