//! Authentication and access: failed logins (brute force), calls refused for lack of
//! permission, authentication switched off, users and roles changed, and one auth token
//! used from more than one address (tokens are compared as keyed hashes, never kept or
//! printed).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;

use super::window::{Burst, Fired, PerClient, Sample};
use super::{client_ip, plural, span, Ctx, Evidence, Observation, Opening, Severity, Volume};
use crate::analyze::rpc::{RecordKind, RpcBody, RpcCall, REDACTED};
use crate::decode::etcdpb::EtcdMessage;
use crate::decode::grpc::status_code_name;

/// Tokens remembered for the reuse check.
const MAX_TOKENS: usize = 65_536;

/// Methods that change who may do what.
const ACCESS_CHANGES: [&str; 10] = [
    "AuthEnable",
    "UserAdd",
    "UserDelete",
    "UserChangePassword",
    "UserGrantRole",
    "UserRevokeRole",
    "RoleAdd",
    "RoleDelete",
    "RoleGrantPermission",
    "RoleRevokePermission",
];

struct TokenUse {
    first: IpAddr,
    first_ns: u64,
    reported: Vec<IpAddr>,
}

#[derive(Default)]
pub struct Auth {
    failed: PerClient<Burst>,
    denied: PerClient<Burst>,
    tokens: HashMap<u64, TokenUse>,
    hasher: RandomState,
}

fn status_text(call: &RpcCall) -> String {
    match call.status {
        Some(code) => {
            let mut s = format!("{} {}", code, status_code_name(code));
            if let Some(m) = &call.grpc_message {
                s.push_str(": ");
                s.push_str(m);
            }
            s
        }
        None => "no status seen".into(),
    }
}

/// What an access-changing call changed, without secrets.
fn describe_change(call: &RpcCall) -> String {
    let what = match call.request.as_ref().and_then(RpcBody::message) {
        Some(EtcdMessage::AuthUserAddRequest(r)) => format!("add user {:?}", r.name),
        Some(EtcdMessage::AuthUserDeleteRequest(r)) => format!("delete user {:?}", r.name),
        Some(EtcdMessage::AuthUserChangePasswordRequest(r)) => {
            format!("change password of user {:?}", r.name)
        }
        Some(EtcdMessage::AuthUserGrantRoleRequest(r)) => {
            format!("grant role {:?} to user {:?}", r.role, r.user)
        }
        Some(EtcdMessage::AuthUserRevokeRoleRequest(r)) => {
            format!("revoke role {:?} from user {:?}", r.role, r.name)
        }
        Some(EtcdMessage::AuthRoleAddRequest(r)) => format!("add role {:?}", r.name),
        Some(EtcdMessage::AuthRoleDeleteRequest(r)) => format!("delete role {:?}", r.role),
        Some(EtcdMessage::AuthRoleGrantPermissionRequest(r)) => {
            format!("grant a permission to role {:?}", r.name)
        }
        Some(EtcdMessage::AuthRoleRevokePermissionRequest(r)) => {
            format!("revoke a permission from role {:?}", r.role)
        }
        _ => call.method_name().to_string(),
    };
    format!("{what} ({})", status_text(call))
}

impl Auth {
    pub fn call(&mut self, call: &RpcCall, ctx: &mut Ctx) {
        let client = client_ip(call);
        self.token(call, client, ctx);
        if call.kind == RecordKind::Call || matches!(call.kind, RecordKind::StreamEnd { .. }) {
            self.denied(call, client, ctx);
        }
        if call.kind != RecordKind::Call {
            return;
        }
        let rules = &ctx.rules.rules;
        let name = call.method_name();
        let is_auth = call
            .method
            .as_deref()
            .is_some_and(|m| m.starts_with("/etcdserverpb.Auth/"));
        if !is_auth {
            return;
        }
        let obs = |detail: String| Observation {
            ts_ns: call.ts_ns,
            end_ns: call.end_ns,
            evidence: Evidence::of_call(call, detail),
            volume: Volume {
                rpcs: 1,
                ..Volume::default()
            },
        };
        if name == "Authenticate" && call.status.is_some_and(|s| s != 0) {
            let rule = &rules.auth_failed_login;
            if !rule.enabled {
                return;
            }
            let user = match call.request.as_ref().and_then(RpcBody::message) {
                Some(EtcdMessage::AuthenticateRequest(r)) => format!("user {:?}: ", r.name),
                _ => String::new(),
            };
            let detail = format!("{user}{}", status_text(call));
            counted(
                &mut self.failed,
                "auth-failed-login",
                rule.severity,
                rule.window,
                rule.threshold,
                client,
                obs(detail),
                ctx,
                Box::new(|f| {
                    format!(
                        "{} failed to log in {} within {}: repeated failed logins are password guessing",
                        f.client,
                        plural(f.events, "time"),
                        span(f)
                    )
                }),
            );
        } else if name == "AuthDisable" {
            let rule = &rules.auth_disable;
            if rule.enabled {
                let how = Opening {
                    rule: "auth-disable",
                    severity: rule.severity,
                    client: client.to_string(),
                    quiet_ns: 60_000_000_000,
                    with_volume: false,
                    summarize: Box::new(|f| {
                        format!(
                            "{} asked etcd to disable authentication ({}): once it is off, every client may read and write every key",
                            f.client,
                            plural(f.events, "call")
                        )
                    }),
                };
                ctx.episodes.single(how, obs(status_text(call)), ctx.out);
            }
        } else if ACCESS_CHANGES.contains(&name) {
            let rule = &rules.auth_user_role_change;
            if rule.enabled {
                let how = Opening {
                    rule: "auth-user-role-change",
                    severity: rule.severity,
                    client: client.to_string(),
                    quiet_ns: 60_000_000_000,
                    with_volume: false,
                    summarize: Box::new(|f| {
                        format!(
                            "{} changed users, roles or permissions ({}): such changes grant or remove access and should match a known change",
                            f.client,
                            plural(f.events, "call")
                        )
                    }),
                };
                ctx.episodes
                    .single(how, obs(describe_change(call)), ctx.out);
            }
        }
    }

    fn denied(&mut self, call: &RpcCall, client: IpAddr, ctx: &mut Ctx) {
        let rule = &ctx.rules.rules.auth_denied;
        let Some(status) = call.status else {
            return;
        };
        if !rule.enabled || !rule.statuses.contains(&status) {
            return;
        }
        let obs = Observation {
            ts_ns: call.ts_ns,
            end_ns: call.end_ns,
            evidence: Evidence::of_call(call, status_text(call)),
            volume: Volume {
                rpcs: 1,
                ..Volume::default()
            },
        };
        counted(
            &mut self.denied,
            "auth-denied",
            rule.severity,
            rule.window,
            rule.threshold,
            client,
            obs,
            ctx,
            Box::new(|f| {
                format!(
                    "{} had {} refused for lack of permission or authentication within {}: a client probing what it may reach, or using a stolen or expired credential",
                    f.client,
                    plural(f.events, "call"),
                    span(f)
                )
            }),
        );
    }

    fn token(&mut self, call: &RpcCall, client: IpAddr, ctx: &mut Ctx) {
        let rule = &ctx.rules.rules.auth_token_reuse;
        let Some(token) = call.token.as_deref() else {
            return;
        };
        if !rule.enabled || token.is_empty() || token == REDACTED {
            return;
        }
        // Only the first record of a call carries news; messages repeat the header.
        if matches!(call.kind, RecordKind::Message { index, .. } if index > 0) {
            return;
        }
        let h = self.hasher.hash_one(token);
        if !self.tokens.contains_key(&h) && self.tokens.len() >= MAX_TOKENS {
            self.tokens.clear();
        }
        let entry = self.tokens.entry(h).or_insert(TokenUse {
            first: client,
            first_ns: call.ts_ns,
            reported: Vec::new(),
        });
        if entry.first == client {
            return;
        }
        let first = entry.first;
        let first_ns = entry.first_ns;
        let new_address = !entry.reported.contains(&client);
        if new_address && entry.reported.len() < 16 {
            entry.reported.push(client);
        }
        let id = "auth-token-reuse";
        let cs = client.to_string();
        let obs = Observation {
            ts_ns: call.ts_ns,
            end_ns: call.end_ns,
            evidence: Evidence::of_call(
                call,
                format!(
                    "a token first used from {first} {} earlier",
                    crate::units::human_duration_ns(call.ts_ns.saturating_sub(first_ns))
                ),
            ),
            volume: Volume {
                rpcs: 1,
                ..Volume::default()
            },
        };
        let how = Opening {
            rule: id,
            severity: rule.severity,
            client: cs,
            quiet_ns: 60_000_000_000,
            with_volume: false,
            summarize: Box::new(move |f| {
                format!(
                    "{} made {} with an auth token that {first} obtained: a token used from a second address has likely been stolen",
                    f.client,
                    plural(f.events, "call")
                )
            }),
        };
        ctx.episodes.single(how, obs, ctx.out);
    }
}

/// The counting-rule pattern: join the client's open finding, or count the call and open
/// one when `threshold` calls fall within `window`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn counted(
    state: &mut PerClient<Burst>,
    rule: &'static str,
    severity: Severity,
    window: u64,
    threshold: u64,
    client: IpAddr,
    obs: Observation,
    ctx: &mut Ctx,
    summarize: super::Summarize,
) {
    let cs = client.to_string();
    if ctx.episodes.is_open(rule, &cs) {
        ctx.episodes.extend(rule, &cs, obs);
        return;
    }
    let limit = ctx.evidence_limit();
    let burst = state.get(client, obs.ts_ns, window, Burst::default);
    let sample = Sample {
        ts_ns: obs.ts_ns,
        end_ns: obs.end_ns,
        bytes: obs.volume.bytes,
        keys: obs.volume.keys,
    };
    let fired: Option<Fired> = burst.hit(sample, obs.evidence, threshold, window, limit);
    if let Some(fired) = fired {
        let how = Opening {
            rule,
            severity,
            client: cs,
            quiet_ns: window,
            with_volume: true,
            summarize,
        };
        ctx.open_fired(how, fired);
    }
}
