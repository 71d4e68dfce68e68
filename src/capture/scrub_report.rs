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
    /// Connection directions given up after a gap (a hole that did not fill while bytes
    /// past it could be held), a cut payload or a frame we could not follow: the rest of
    /// them passed unscrubbed.
    pub directions_given_up: u64,
    /// Connection directions that are not HTTP/2 (peer traffic, and TLS ciphertext or
    /// plaintext that is not HTTP/2).
    pub not_http2_directions: u64,
    /// Connections beyond the number followed at once: passed unscrubbed.
    pub connections_over_limit: u64,
    /// Packets with payload that passed without scrubbing (mid-stream, given up).
    pub unscrubbed_packets: u64,
    /// What was done to TLS plaintext; `None` in files recorded before it was redacted
    /// (their TLS events, if any, were not scrubbed). The counts above are of packets
    /// only, but for what was redacted and the directions that are not HTTP/2, which
    /// count TLS plaintext too.
    ///
    /// Added to format 3 after its first files: it is the last field of the index, and
    /// an index written without it ends where it begins (see `Index::decode_section`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsScrubReport>,
}

/// What the scrubber did with the TLS plaintext of etcd's connections.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Encode, Decode, Serialize)]
pub struct TlsScrubReport {
    /// TLS connections followed from their start.
    pub connections: u64,
    /// TLS connections already open when recording began: passed unscrubbed.
    pub midstream_connections: u64,
    /// TLS connections whose endpoints or start stayed unknown longer than their chunks
    /// may be held: passed unscrubbed.
    pub connections_given_up: u64,
    /// Directions given up after lost or unreadable plaintext or a frame we could not
    /// follow: the rest of them passed unscrubbed.
    pub directions_given_up: u64,
    /// Connections beyond the number followed at once: passed unscrubbed.
    pub connections_over_limit: u64,
    /// Chunks of plaintext that passed without scrubbing (mid-stream, given up).
    pub unscrubbed_chunks: u64,
}

impl TlsScrubReport {
    /// Each count of this report and of `other`, put together by `op`.
    fn zip(&self, other: &TlsScrubReport, op: fn(u64, u64) -> u64) -> TlsScrubReport {
        TlsScrubReport {
            connections: op(self.connections, other.connections),
            midstream_connections: op(self.midstream_connections, other.midstream_connections),
            connections_given_up: op(self.connections_given_up, other.connections_given_up),
            directions_given_up: op(self.directions_given_up, other.directions_given_up),
            connections_over_limit: op(self.connections_over_limit, other.connections_over_limit),
            unscrubbed_chunks: op(self.unscrubbed_chunks, other.unscrubbed_chunks),
        }
    }

    /// Whether some plaintext may have kept a secret.
    pub fn incomplete(&self) -> bool {
        self.unscrubbed_chunks > 0 || self.connections_over_limit > 0
    }

    /// Whether there was any TLS plaintext to scrub.
    pub fn any(&self) -> bool {
        *self != TlsScrubReport::default()
    }
}

impl ScrubReport {
    /// What happened after `earlier`, a report the same scrubber gave before: the share
    /// of one file when a recording rotates.
    pub fn since(&self, earlier: &ScrubReport) -> ScrubReport {
        ScrubReport {
            tls: self
                .tls
                .map(|tls| tls.zip(&earlier.tls.unwrap_or_default(), u64::saturating_sub)),
            ..self.zip(earlier, u64::saturating_sub)
        }
    }

    /// What two scrubbers did together: the report of a capture merged from theirs.
    /// TLS plaintext counts as scrubbed only when both scrubbed theirs.
    pub fn plus(&self, other: &ScrubReport) -> ScrubReport {
        ScrubReport {
            tls: match (self.tls, other.tls) {
                (Some(a), Some(b)) => Some(a.zip(&b, u64::saturating_add)),
                _ => None,
            },
            ..self.zip(other, u64::saturating_add)
        }
    }

    /// Each packet count of this report and of `other`, put together by `op` (`tls`
    /// left out).
    fn zip(&self, other: &ScrubReport, op: fn(u64, u64) -> u64) -> ScrubReport {
        ScrubReport {
            header_values_redacted: op(self.header_values_redacted, other.header_values_redacted),
            header_values_suspected: op(
                self.header_values_suspected,
                other.header_values_suspected,
            ),
            header_blocks_unparsable: op(
                self.header_blocks_unparsable,
                other.header_blocks_unparsable,
            ),
            fields_redacted: op(self.fields_redacted, other.fields_redacted),
            compressed_messages_blanked: op(
                self.compressed_messages_blanked,
                other.compressed_messages_blanked,
            ),
            unparsable_messages_blanked: op(
                self.unparsable_messages_blanked,
                other.unparsable_messages_blanked,
            ),
            midstream_connections: op(self.midstream_connections, other.midstream_connections),
            directions_given_up: op(self.directions_given_up, other.directions_given_up),
            not_http2_directions: op(self.not_http2_directions, other.not_http2_directions),
            connections_over_limit: op(self.connections_over_limit, other.connections_over_limit),
            unscrubbed_packets: op(self.unscrubbed_packets, other.unscrubbed_packets),
            tls: None,
        }
    }

    /// Whether some client traffic may have kept a secret.
    pub fn incomplete(&self) -> bool {
        self.packets_incomplete() || self.tls.is_some_and(|tls| tls.incomplete())
    }

    fn packets_incomplete(&self) -> bool {
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
        if let Some(tls) = self.tls.filter(TlsScrubReport::any) {
            write!(
                f,
                " (TLS plaintext included: {} connections followed from their start)",
                tls.connections
            )?;
        }
        if blanked > 0 {
            write!(f, ", blanked {blanked} whole messages/header blocks")?;
        }
        let mut not_scrubbed = "; NOT scrubbed: ";
        if self.packets_incomplete() {
            write!(
                f,
                "{not_scrubbed}{} packets ({} connections open before recording, {} \
                 directions given up after lost bytes, {} connections over \
                 the limit)",
                self.unscrubbed_packets,
                self.midstream_connections,
                self.directions_given_up,
                self.connections_over_limit
            )?;
            not_scrubbed = ", ";
        }
        if let Some(tls) = self.tls.filter(TlsScrubReport::incomplete) {
            write!(
                f,
                "{not_scrubbed}{} TLS plaintext chunks ({} TLS connections open before \
                 recording, {} whose endpoints or start stayed unknown, {} directions given \
                 up after lost bytes, {} connections over the limit)",
                tls.unscrubbed_chunks,
                tls.midstream_connections,
                tls.connections_given_up,
                tls.directions_given_up,
                tls.connections_over_limit
            )?;
        }
        if self.not_http2_directions > 0 {
            write!(
                f,
                "; {} non-HTTP/2 directions (peer traffic, TLS ciphertext) kept as is",
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

    /// A merged capture's report counts what every host's scrubber did; TLS plaintext
    /// only when every one scrubbed it.
    #[test]
    fn merged_reports_add_up() {
        let tls = |n| {
            Some(TlsScrubReport {
                connections: n,
                unscrubbed_chunks: 1,
                ..TlsScrubReport::default()
            })
        };
        let a = ScrubReport {
            header_values_redacted: 2,
            midstream_connections: 1,
            unscrubbed_packets: u64::MAX,
            tls: tls(3),
            ..ScrubReport::default()
        };
        let b = ScrubReport {
            header_values_redacted: 5,
            unscrubbed_packets: 4,
            tls: tls(4),
            ..ScrubReport::default()
        };
        let sum = a.plus(&b);
        assert_eq!(sum.header_values_redacted, 7);
        assert_eq!(sum.midstream_connections, 1);
        assert_eq!(sum.unscrubbed_packets, u64::MAX);
        assert_eq!(
            sum.tls,
            Some(TlsScrubReport {
                connections: 7,
                unscrubbed_chunks: 2,
                ..TlsScrubReport::default()
            })
        );
        let older = ScrubReport { tls: None, ..b };
        assert_eq!(a.plus(&older).tls, None);
        assert_eq!(older.plus(&a).tls, None);
    }

    /// TLS counts: each file its share, and the summary says what happened to TLS
    /// plaintext when there was any, and nothing of it when there was none.
    #[test]
    fn tls_plaintext_is_reported_when_there_was_some() {
        let none = ScrubReport {
            tls: Some(TlsScrubReport::default()),
            ..ScrubReport::default()
        };
        assert!(!none.to_string().contains("TLS plaintext"), "{none}");
        let earlier = ScrubReport {
            tls: Some(TlsScrubReport {
                connections: 2,
                ..TlsScrubReport::default()
            }),
            ..ScrubReport::default()
        };
        let now = ScrubReport {
            fields_redacted: 1,
            tls: Some(TlsScrubReport {
                connections: 5,
                midstream_connections: 1,
                unscrubbed_chunks: 4,
                ..TlsScrubReport::default()
            }),
            ..ScrubReport::default()
        };
        let share = now.since(&earlier);
        assert_eq!(share.tls.map(|t| t.connections), Some(3));
        assert!(share.incomplete());
        let text = share.to_string();
        assert!(
            text.contains("TLS plaintext included: 3 connections")
                && text.contains("NOT scrubbed: 4 TLS plaintext chunks (1 TLS connections")
                && !text.contains("packets"),
            "{text}"
        );
        // Both kinds of gap, in one list.
        let both = ScrubReport {
            unscrubbed_packets: 2,
            ..share
        };
        let text = both.to_string();
        assert!(text.contains("NOT scrubbed: 2 packets ("), "{text}");
        assert!(
            text.contains("the limit), 4 TLS plaintext chunks ("),
            "{text}"
        );
        // A report from before TLS counts has none to share.
        assert_eq!(ScrubReport::default().since(&earlier).tls, None);
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
