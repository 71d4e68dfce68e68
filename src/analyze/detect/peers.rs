//! Unexpected peers and clients, from the packets themselves: connections to the peer
//! port from addresses that are not members, connection attempts answered with a reset,
//! clients from outside the configured networks, and connections to the client port
//! that carried nothing readable. Members are the configured ones,
//! the hosts in the peer URLs of MemberList (and member change) responses, and the hosts
//! seen accepting connections on the peer port. Peer connections are judged at the end,
//! when every member list in the capture has been seen.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use super::auth::counted;
use super::net::{canonical, parse_host};
use super::window::{Burst, PerClient, SeenSet};
use super::{client_ip, plural, span, Ctx, Evidence, Observation, Opening, Severity, Volume};
use crate::analyze::rpc::{RecordKind, RpcBody, RpcCall};
use crate::capture::Packet;
use crate::decode::etcdpb::EtcdMessage;
use crate::decode::tcp::{ConnectionKey, FlowDirection};

/// Connection attempts awaiting an answer, and peer-port clients, kept at most.
const MAX_PENDING: usize = 65_536;
const MAX_PEER_CLIENTS: usize = 4096;
/// An unanswered SYN is forgotten after this long.
const PENDING_NS: u64 = 30_000_000_000;

#[derive(Debug, Default)]
struct PeerClient {
    first_ns: u64,
    last_ns: u64,
    connections: u64,
    bytes: u64,
    evidence: Vec<Evidence>,
}

pub struct Peers {
    pending: HashMap<(SocketAddr, SocketAddr), u64>,
    resets: PerClient<Burst>,
    garbage: PerClient<Burst>,
    accepting: HashSet<IpAddr>,
    listed: HashSet<IpAddr>,
    listed_seen: bool,
    peer_clients: HashMap<IpAddr, PeerClient>,
    seen_conns: SeenSet<(SocketAddr, SocketAddr)>,
}

impl Default for Peers {
    fn default() -> Self {
        Peers {
            pending: HashMap::new(),
            resets: PerClient::default(),
            garbage: PerClient::default(),
            accepting: HashSet::new(),
            listed: HashSet::new(),
            listed_seen: false,
            peer_clients: HashMap::new(),
            seen_conns: SeenSet::new(MAX_PENDING),
        }
    }
}

fn packet_evidence(p: &Packet, what: &str, detail: String) -> Evidence {
    Evidence {
        ts_ns: p.ts_ns,
        stream: format!("{} -> {}", p.src, p.dst),
        method: what.to_string(),
        detail,
    }
}

impl Peers {
    pub fn packet(&mut self, p: &Packet, client_ports: &[u16], ctx: &mut Ctx) {
        let peer_port = ctx.rules.peer_port;
        let traced = |port: u16| port == peer_port || client_ports.contains(&port);
        if !traced(p.src.port()) && !traced(p.dst.port()) {
            return;
        }
        let (key, dir) = ConnectionKey::of_segment(p.src, p.dst, traced);
        let (client, server) = (key.client, key.server);
        let to_server = dir == FlowDirection::ClientToServer;
        let flags = p.flags;
        if to_server && flags.syn() && !flags.ack() {
            if self.pending.len() >= MAX_PENDING {
                let horizon = p.ts_ns.saturating_sub(PENDING_NS);
                self.pending.retain(|_, t| *t >= horizon);
                if self.pending.len() >= MAX_PENDING {
                    self.pending.clear();
                }
            }
            self.pending.insert((client, server), p.ts_ns);
            if client_ports.contains(&server.port()) {
                outside_networks(
                    canonical(client.ip()),
                    p.ts_ns,
                    packet_evidence(p, "SYN", "connection to the client port".into()),
                    ctx,
                );
            }
        } else if !to_server && flags.syn() && flags.ack() {
            self.pending.remove(&(client, server));
            if server.port() == peer_port {
                self.accepting.insert(canonical(server.ip()));
            }
        } else if !to_server && flags.rst() {
            if let Some(syn_ns) = self.pending.remove(&(client, server)) {
                let rule = &ctx.rules.rules.connection_reset;
                if rule.enabled {
                    let obs = Observation {
                        ts_ns: syn_ns,
                        end_ns: p.ts_ns,
                        evidence: packet_evidence(
                            p,
                            "RST",
                            format!("connection attempt to {server} refused"),
                        ),
                        volume: Volume::default(),
                    };
                    counted(
                        &mut self.resets,
                        "connection-reset",
                        rule.severity,
                        rule.window,
                        rule.threshold,
                        canonical(client.ip()),
                        obs,
                        ctx,
                        Box::new(|f| {
                            format!(
                                "{} had {} refused with a reset within {}: repeated refused connections are port scanning, or a client aiming at an address where no member listens",
                                f.client,
                                plural(f.events, "connection attempt"),
                                super::span(f)
                            )
                        }),
                    );
                }
            }
        }
        if to_server && server.port() == peer_port {
            self.peer_packet(p, client, server, ctx);
        }
    }

    fn peer_packet(&mut self, p: &Packet, client: SocketAddr, server: SocketAddr, ctx: &Ctx) {
        if !ctx.rules.rules.peer_unknown_address.enabled {
            return;
        }
        let ip = canonical(client.ip());
        if !self.peer_clients.contains_key(&ip) && self.peer_clients.len() >= MAX_PEER_CLIENTS {
            return;
        }
        let c = self.peer_clients.entry(ip).or_insert_with(|| PeerClient {
            first_ns: p.ts_ns,
            ..PeerClient::default()
        });
        c.last_ns = c.last_ns.max(p.ts_ns);
        c.bytes = c.bytes.saturating_add(u64::from(p.payload_len));
        if self.seen_conns.insert((client, server)) {
            c.connections += 1;
            if c.evidence.len() < ctx.evidence_limit() {
                let what = if p.flags.syn() { "SYN" } else { "packet" };
                let detail = if p.flags.syn() {
                    format!("new connection to the peer port {server}")
                } else {
                    format!("connection to the peer port {server}, open before recording began")
                };
                c.evidence.push(packet_evidence(p, what, detail));
            }
        }
    }

    pub fn call(&mut self, call: &RpcCall, ctx: &mut Ctx) {
        if call.kind == RecordKind::Call
            || matches!(call.kind, RecordKind::Message { index: 0, .. })
        {
            let ev = Evidence::of_call(call, "RPC".into());
            outside_networks(client_ip(call), call.ts_ns, ev, ctx);
        }
        if call.is_unreadable_connection() {
            self.garbage(call, ctx);
        }
        let members = match call.response.as_ref().and_then(RpcBody::message) {
            Some(EtcdMessage::MemberListResponse(r)) => &r.members,
            Some(EtcdMessage::MemberAddResponse(r)) => &r.members,
            Some(EtcdMessage::MemberRemoveResponse(r)) => &r.members,
            Some(EtcdMessage::MemberUpdateResponse(r)) => &r.members,
            Some(EtcdMessage::MemberPromoteResponse(r)) => &r.members,
            _ => return,
        };
        self.listed_seen = true;
        for m in members {
            for url in &m.peer_urls {
                if let Some(ip) = parse_host(url) {
                    if self.listed.len() < MAX_PEER_CLIENTS {
                        self.listed.insert(ip);
                    }
                }
            }
        }
    }

    /// A connection to the client port that carried nothing readable: random bytes,
    /// broken HTTP/2, another protocol.
    fn garbage(&mut self, call: &RpcCall, ctx: &mut Ctx) {
        let rule = &ctx.rules.rules.client_garbage;
        if !rule.enabled {
            return;
        }
        let why = call.notes.first().cloned().unwrap_or_default();
        let obs = Observation {
            ts_ns: call.ts_ns,
            end_ns: call.end_ns,
            evidence: Evidence::of_call(call, why),
            volume: Volume {
                rpcs: 0,
                bytes: call.request_bytes,
                keys: 0,
            },
        };
        counted(
            &mut self.garbage,
            "client-garbage",
            rule.severity,
            rule.window,
            rule.threshold,
            client_ip(call),
            obs,
            ctx,
            Box::new(|f| {
                format!(
                    "{} opened {} to the client port that carried nothing etcd could read ({}): random bytes, broken HTTP/2 or another protocol is scanning or fuzzing",
                    f.client,
                    plural(f.events, "connection"),
                    span(f)
                )
            }),
        );
    }

    pub fn finish(&mut self, ctx: &mut Ctx) {
        let rule = &ctx.rules.rules.peer_unknown_address;
        if !rule.enabled {
            return;
        }
        let configured = !rule.members.is_empty();
        let trusted = configured || self.listed_seen;
        let severity = if trusted {
            rule.severity
        } else {
            Severity::Low
        };
        let mut unknown: Vec<(IpAddr, PeerClient)> = std::mem::take(&mut self.peer_clients)
            .into_iter()
            .filter(|(ip, _)| {
                !rule.members.contains(ip)
                    && !self.listed.contains(ip)
                    && !self.accepting.contains(ip)
            })
            .collect();
        unknown.sort_by_key(|(_, c)| c.first_ns);
        for (ip, c) in unknown {
            let how = Opening {
                rule: "peer-unknown-address",
                severity,
                client: ip.to_string(),
                quiet_ns: 0,
                with_volume: false,
                summarize: Box::new(move |f| {
                    let why = if trusted {
                        "it is not in the member list"
                    } else {
                        "it is not a member seen in the capture (no member list was captured or configured: list the members in the rules to raise this to its full severity)"
                    };
                    format!(
                        "{} opened {} to the peer port, but {why}: only members should speak raft to a member",
                        f.client,
                        plural(f.events, "connection")
                    )
                }),
            };
            let kept = c.evidence.len() as u64;
            let fired = super::window::Fired {
                start_ns: c.first_ns,
                end_ns: c.last_ns,
                count: c.connections.max(kept),
                bytes: c.bytes,
                keys: 0,
                evidence: c.evidence,
            };
            ctx.episodes.open(how, fired, 0, ctx.out);
        }
    }
}

/// A client from outside the configured networks (no check when none are configured).
fn outside_networks(ip: IpAddr, ts_ns: u64, evidence: Evidence, ctx: &mut Ctx) {
    let rule = &ctx.rules.rules.client_outside_networks;
    if !rule.enabled || rule.networks.is_empty() || rule.networks.iter().any(|n| n.contains(ip)) {
        return;
    }
    let how = Opening {
        rule: "client-outside-networks",
        severity: rule.severity,
        client: ip.to_string(),
        quiet_ns: 600_000_000_000,
        with_volume: false,
        summarize: Box::new(|f| {
            format!(
                "{} reached the client port from outside the allowed networks ({} seen): etcd should be reachable only from known networks",
                f.client,
                plural(f.events, "connection or call")
            )
        }),
    };
    let obs = Observation {
        ts_ns,
        end_ns: ts_ns,
        evidence,
        volume: Volume::default(),
    };
    ctx.episodes.single(how, obs, ctx.out);
}
