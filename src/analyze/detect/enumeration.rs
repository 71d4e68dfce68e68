//! Enumeration: walking the keyspace one key at a time (many distinct single-key gets
//! from one client), and paging through a sensitive prefix.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use super::bulk::{describe_range_call, range_request, response_keys};
use super::window::{Burst, Distinct, PerClient, Sample};
use super::{client_ip, plural, span, Ctx, Evidence, Observation, Opening, Volume};
use crate::analyze::rpc::{RecordKind, RpcCall};
use crate::decode::etcdpb::{display_key, prefix_range_end};

#[derive(Default)]
pub struct Enumeration {
    gets: PerClient<Distinct>,
    pages: PerClient<Burst>,
}

fn key_hash(key: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// True when a paged Range reads (the rest of) `prefix`: it starts inside the prefix,
/// or before it, and runs to the prefix's end or beyond.
fn pages_through(key: &[u8], range_end: &[u8], prefix: &[u8]) -> bool {
    if range_end.is_empty() || prefix.is_empty() {
        return false;
    }
    let pend = prefix_range_end(prefix);
    let starts_in = key.starts_with(prefix) || key <= prefix;
    starts_in && key < pend.as_slice() && (range_end == [0] || range_end >= pend.as_slice())
}

impl Enumeration {
    pub fn call(&mut self, call: &RpcCall, ctx: &mut Ctx) {
        if call.method_name() != "Range" || call.kind != RecordKind::Call {
            return;
        }
        let Some(req) = range_request(call) else {
            return;
        };
        let client = client_ip(call);
        let cs = client.to_string();
        let limit = ctx.evidence_limit();
        let obs = || Observation {
            ts_ns: call.ts_ns,
            end_ns: call.end_ns,
            evidence: Evidence::of_call(call, describe_range_call(call)),
            volume: Volume {
                rpcs: 1,
                bytes: call.response_bytes,
                keys: response_keys(call),
            },
        };
        let rule = &ctx.rules.rules.enum_single_key_gets;
        if rule.enabled && req.range_end.is_empty() {
            const ID: &str = "enum-single-key-gets";
            if ctx.episodes.is_open(ID, &cs) {
                ctx.episodes.extend(ID, &cs, obs());
            } else {
                let state = self
                    .gets
                    .get(client, call.ts_ns, rule.window, Distinct::default);
                let ev = Evidence::of_call(call, format!("get {}", display_key(&req.key)));
                if let Some(fired) = state.hit(
                    call.ts_ns,
                    key_hash(&req.key),
                    ev,
                    rule.distinct_keys,
                    rule.window,
                    limit,
                ) {
                    let how = Opening {
                        rule: ID,
                        severity: rule.severity,
                        client: cs.clone(),
                        quiet_ns: rule.window,
                        with_volume: true,
                        summarize: Box::new(|f| {
                            format!(
                                "{} read {} one key at a time within {}: walking the keyspace key by key is how a client enumerates data it should not list",
                                f.client,
                                plural(f.events, "key"),
                                span(f)
                            )
                        }),
                    };
                    let n = fired.count;
                    ctx.episodes.open(how, fired, n, ctx.out);
                }
            }
        }
        let rule = &ctx.rules.rules.enum_sensitive_pagination;
        if rule.enabled && req.limit > 0 && !req.count_only {
            let Some(prefix) = rule
                .prefixes
                .iter()
                .find(|p| pages_through(&req.key, &req.range_end, p))
            else {
                return;
            };
            const ID: &str = "enum-sensitive-pagination";
            if ctx.episodes.is_open(ID, &cs) {
                ctx.episodes.extend(ID, &cs, obs());
                return;
            }
            let state = self
                .pages
                .get(client, call.ts_ns, rule.window, Burst::default);
            let sample = Sample {
                ts_ns: call.ts_ns,
                end_ns: call.end_ns,
                bytes: call.response_bytes,
                keys: response_keys(call),
            };
            let ev = Evidence::of_call(call, describe_range_call(call));
            if let Some(fired) = state.hit(sample, ev, rule.min_pages, rule.window, limit) {
                let shown = display_key(prefix);
                let how = Opening {
                    rule: ID,
                    severity: rule.severity,
                    client: cs,
                    quiet_ns: rule.window,
                    with_volume: true,
                    summarize: Box::new(move |f| {
                        let v = f.volume.unwrap_or_default();
                        format!(
                            "{} paged through the sensitive prefix {shown} ({}, {} keys) within {}: listing it page by page reads every entry under it",
                            f.client,
                            plural(f.events, "page"),
                            v.keys,
                            span(f)
                        )
                    }),
                };
                let n = fired.count;
                ctx.episodes.open(how, fired, n, ctx.out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pages_through;

    #[test]
    fn pagination_ranges() {
        let p = b"/registry/secrets/";
        assert!(pages_through(p, b"/registry/secrets0", p));
        assert!(pages_through(
            b"/registry/secrets/ns/a\0",
            b"/registry/secrets0",
            p
        ));
        assert!(pages_through(b"\0", b"\0", p));
        assert!(!pages_through(b"/registry/secrets/a", b"", p));
        assert!(!pages_through(b"/registry/pods/", b"/registry/pods0", p));
        assert!(!pages_through(b"/registry/t", b"\0", p));
    }
}
