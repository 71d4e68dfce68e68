//! etcd's v3 gRPC messages, written as our own prost types (field numbers from etcd's
//! .proto files), with the canonical proto3 JSON mapping for output. This module is the
//! method registry: it maps a gRPC `:path` to the service, the streaming kind and the
//! message types, and decodes request and response bodies into [`EtcdMessage`].

/// Declares messages that carry nothing but the response header.
macro_rules! header_only_response {
    ($($(#[$meta:meta])* $name:ident;)*) => {$(
        $(#[$meta])*
        #[derive(Clone, PartialEq, ::prost::Message, ::serde::Serialize)]
        pub struct $name {
            #[prost(message, optional, tag = "1")]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub header: Option<$crate::decode::etcdpb::kv::ResponseHeader>,
        }
    )*};
}

/// Declares messages without fields.
macro_rules! empty_message {
    ($($(#[$meta:meta])* $name:ident;)*) => {$(
        $(#[$meta])*
        #[derive(Clone, PartialEq, ::prost::Message, ::serde::Serialize)]
        pub struct $name {}
    )*};
}

pub mod json;

pub mod auth;
pub mod cluster;
pub mod election;
pub mod health;
pub mod kv;
pub mod lease;
pub mod lock;
pub mod maintenance;
pub mod mvcc;
pub mod raft_internal;
pub mod watch;

pub use auth::*;
pub use cluster::*;
pub use election::*;
pub use health::*;
pub use kv::*;
pub use lease::*;
pub use lock::*;
pub use maintenance::*;
pub use mvcc::*;
pub use watch::*;

use prost::Message;

/// How many messages each side of a call sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum StreamKind {
    /// One request, one response.
    Unary,
    /// Many requests, one response.
    ClientStream,
    /// One request, many responses.
    ServerStream,
    /// Many requests, many responses.
    Bidi,
}

/// One gRPC method that etcd serves on its client port.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MethodInfo {
    /// The HTTP/2 `:path`, e.g. `/etcdserverpb.KV/Put`.
    pub path: &'static str,
    /// The fully qualified service, e.g. `etcdserverpb.KV`.
    pub service: &'static str,
    /// The method name, e.g. `Put`.
    pub method: &'static str,
    /// The streaming kind.
    pub kind: StreamKind,
    /// True when the method can change cluster state (keys, leases, members, users,
    /// alarms, leadership); read-only methods are false.
    pub mutating: bool,
    /// The request message type, e.g. `etcdserverpb.PutRequest`.
    pub request_type: &'static str,
    /// The response message type, e.g. `etcdserverpb.PutResponse`.
    pub response_type: &'static str,
}

/// Why a gRPC message body could not be decoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EtcdDecodeError {
    /// The `:path` is not a method in the registry.
    #[error("unknown gRPC method {path:?}")]
    UnknownMethod { path: String },
    /// The method is known but the bytes are not a valid message of its type.
    #[error("malformed {message} for {path}: {source}")]
    Malformed {
        path: &'static str,
        message: &'static str,
        source: prost::DecodeError,
    },
}

/// The longest unknown path kept in an error (the path comes from the wire).
const MAX_PATH_IN_ERROR: usize = 256;

fn unknown_method(path: &str) -> EtcdDecodeError {
    let mut end = path.len().min(MAX_PATH_IN_ERROR);
    while !path.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    EtcdDecodeError::UnknownMethod {
        path: path.get(..end).unwrap_or_default().to_string(),
    }
}

/// Picks the response header out of a message, for the types that have one.
macro_rules! header_of {
    ($m:ident) => {
        None
    };
    ($m:ident, header) => {
        $m.header.as_ref()
    };
}

/// Declares [`EtcdMessage`] with one variant per message type (`[header]` marks the
/// types whose field `header` is a ResponseHeader), and the method registry with the
/// decoder for each method's request and response.
macro_rules! etcd_registry {
    (
        messages { $($ty:ident : $pkg:literal $([$h:ident])?,)* }
        methods { $($path:literal => $svc:literal, $method:literal, $kind:ident, $mutating:literal,
                    $req:ident, $resp:ident;)* }
    ) => {
        /// A decoded etcd gRPC message: one variant per request and response type.
        #[derive(Clone, PartialEq, Debug)]
        #[allow(clippy::large_enum_variant)]
        pub enum EtcdMessage {
            $(
                #[doc = concat!("`", $pkg, ".", stringify!($ty), "`")]
                $ty($ty),
            )*
        }

        /// The fully qualified protobuf name of each message type.
        #[allow(non_upper_case_globals)]
        mod type_names {
            $(pub(super) const $ty: &str = concat!($pkg, ".", stringify!($ty));)*
        }

        impl EtcdMessage {
            /// The fully qualified protobuf type name, e.g. `etcdserverpb.PutRequest`.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(EtcdMessage::$ty(_) => type_names::$ty,)*
                }
            }

            /// The message in the canonical proto3 JSON mapping (as grpcurl prints it).
            pub fn to_json(&self) -> serde_json::Value {
                let value = match self {
                    $(EtcdMessage::$ty(m) => serde_json::to_value(m),)*
                };
                // Serializing these plain structs into a Value cannot fail; keep a
                // visible marker rather than panic if it ever does.
                value.unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
            }

            /// The message encoded again as protobuf (a gRPC body without its prefix):
            /// what `reproduce` sends, possibly after changing ids in it.
            pub fn encode_body(&self) -> Vec<u8> {
                match self {
                    $(EtcdMessage::$ty(m) => m.encode_to_vec(),)*
                }
            }

            fn header_field(&self) -> Option<&ResponseHeader> {
                match self {
                    $(EtcdMessage::$ty(_m) => header_of!(_m $(, $h)?),)*
                }
            }
        }

        /// Every method etcd serves on its client port, in service order.
        pub static METHODS: &[MethodInfo] = &[
            $(MethodInfo {
                path: $path,
                service: $svc,
                method: $method,
                kind: StreamKind::$kind,
                mutating: $mutating,
                request_type: type_names::$req,
                response_type: type_names::$resp,
            },)*
        ];

        fn decode_request_body(path: &str, bytes: &[u8]) -> Result<EtcdMessage, EtcdDecodeError> {
            match path {
                $($path => $req::decode(bytes).map(EtcdMessage::$req).map_err(|source| {
                    EtcdDecodeError::Malformed {
                        path: $path,
                        message: concat!("request ", stringify!($req)),
                        source,
                    }
                }),)*
                _ => Err(unknown_method(path)),
            }
        }

        fn decode_response_body(path: &str, bytes: &[u8]) -> Result<EtcdMessage, EtcdDecodeError> {
            match path {
                $($path => $resp::decode(bytes).map(EtcdMessage::$resp).map_err(|source| {
                    EtcdDecodeError::Malformed {
                        path: $path,
                        message: concat!("response ", stringify!($resp)),
                        source,
                    }
                }),)*
                _ => Err(unknown_method(path)),
            }
        }
    };
}

etcd_registry! {
    messages {
        RangeRequest: "etcdserverpb",
        RangeResponse: "etcdserverpb" [header],
        RangeStreamResponse: "etcdserverpb",
        PutRequest: "etcdserverpb",
        PutResponse: "etcdserverpb" [header],
        DeleteRangeRequest: "etcdserverpb",
        DeleteRangeResponse: "etcdserverpb" [header],
        TxnRequest: "etcdserverpb",
        TxnResponse: "etcdserverpb" [header],
        CompactionRequest: "etcdserverpb",
        CompactionResponse: "etcdserverpb" [header],
        WatchRequest: "etcdserverpb",
        WatchResponse: "etcdserverpb" [header],
        LeaseGrantRequest: "etcdserverpb",
        LeaseGrantResponse: "etcdserverpb" [header],
        LeaseRevokeRequest: "etcdserverpb",
        LeaseRevokeResponse: "etcdserverpb" [header],
        LeaseKeepAliveRequest: "etcdserverpb",
        LeaseKeepAliveResponse: "etcdserverpb" [header],
        LeaseTimeToLiveRequest: "etcdserverpb",
        LeaseTimeToLiveResponse: "etcdserverpb" [header],
        LeaseLeasesRequest: "etcdserverpb",
        LeaseLeasesResponse: "etcdserverpb" [header],
        MemberAddRequest: "etcdserverpb",
        MemberAddResponse: "etcdserverpb" [header],
        MemberRemoveRequest: "etcdserverpb",
        MemberRemoveResponse: "etcdserverpb" [header],
        MemberUpdateRequest: "etcdserverpb",
        MemberUpdateResponse: "etcdserverpb" [header],
        MemberListRequest: "etcdserverpb",
        MemberListResponse: "etcdserverpb" [header],
        MemberPromoteRequest: "etcdserverpb",
        MemberPromoteResponse: "etcdserverpb" [header],
        AlarmRequest: "etcdserverpb",
        AlarmResponse: "etcdserverpb" [header],
        StatusRequest: "etcdserverpb",
        StatusResponse: "etcdserverpb" [header],
        DefragmentRequest: "etcdserverpb",
        DefragmentResponse: "etcdserverpb" [header],
        HashRequest: "etcdserverpb",
        HashResponse: "etcdserverpb" [header],
        HashKVRequest: "etcdserverpb",
        HashKVResponse: "etcdserverpb" [header],
        SnapshotRequest: "etcdserverpb",
        SnapshotResponse: "etcdserverpb" [header],
        MoveLeaderRequest: "etcdserverpb",
        MoveLeaderResponse: "etcdserverpb" [header],
        DowngradeRequest: "etcdserverpb",
        DowngradeResponse: "etcdserverpb" [header],
        AuthEnableRequest: "etcdserverpb",
        AuthEnableResponse: "etcdserverpb" [header],
        AuthDisableRequest: "etcdserverpb",
        AuthDisableResponse: "etcdserverpb" [header],
        AuthStatusRequest: "etcdserverpb",
        AuthStatusResponse: "etcdserverpb" [header],
        AuthenticateRequest: "etcdserverpb",
        AuthenticateResponse: "etcdserverpb" [header],
        AuthUserAddRequest: "etcdserverpb",
        AuthUserAddResponse: "etcdserverpb" [header],
        AuthUserGetRequest: "etcdserverpb",
        AuthUserGetResponse: "etcdserverpb" [header],
        AuthUserListRequest: "etcdserverpb",
        AuthUserListResponse: "etcdserverpb" [header],
        AuthUserDeleteRequest: "etcdserverpb",
        AuthUserDeleteResponse: "etcdserverpb" [header],
        AuthUserChangePasswordRequest: "etcdserverpb",
        AuthUserChangePasswordResponse: "etcdserverpb" [header],
        AuthUserGrantRoleRequest: "etcdserverpb",
        AuthUserGrantRoleResponse: "etcdserverpb" [header],
        AuthUserRevokeRoleRequest: "etcdserverpb",
        AuthUserRevokeRoleResponse: "etcdserverpb" [header],
        AuthRoleAddRequest: "etcdserverpb",
        AuthRoleAddResponse: "etcdserverpb" [header],
        AuthRoleGetRequest: "etcdserverpb",
        AuthRoleGetResponse: "etcdserverpb" [header],
        AuthRoleListRequest: "etcdserverpb",
        AuthRoleListResponse: "etcdserverpb" [header],
        AuthRoleDeleteRequest: "etcdserverpb",
        AuthRoleDeleteResponse: "etcdserverpb" [header],
        AuthRoleGrantPermissionRequest: "etcdserverpb",
        AuthRoleGrantPermissionResponse: "etcdserverpb" [header],
        AuthRoleRevokePermissionRequest: "etcdserverpb",
        AuthRoleRevokePermissionResponse: "etcdserverpb" [header],
        CampaignRequest: "v3electionpb",
        CampaignResponse: "v3electionpb" [header],
        ProclaimRequest: "v3electionpb",
        ProclaimResponse: "v3electionpb" [header],
        LeaderRequest: "v3electionpb",
        LeaderResponse: "v3electionpb" [header],
        ResignRequest: "v3electionpb",
        ResignResponse: "v3electionpb" [header],
        LockRequest: "v3lockpb",
        LockResponse: "v3lockpb" [header],
        UnlockRequest: "v3lockpb",
        UnlockResponse: "v3lockpb" [header],
        HealthCheckRequest: "grpc.health.v1",
        HealthCheckResponse: "grpc.health.v1",
    }
    methods {
        "/etcdserverpb.KV/Range" => "etcdserverpb.KV", "Range", Unary, false, RangeRequest, RangeResponse;
        "/etcdserverpb.KV/RangeStream" => "etcdserverpb.KV", "RangeStream", ServerStream, false, RangeRequest, RangeStreamResponse;
        "/etcdserverpb.KV/Put" => "etcdserverpb.KV", "Put", Unary, true, PutRequest, PutResponse;
        "/etcdserverpb.KV/DeleteRange" => "etcdserverpb.KV", "DeleteRange", Unary, true, DeleteRangeRequest, DeleteRangeResponse;
        "/etcdserverpb.KV/Txn" => "etcdserverpb.KV", "Txn", Unary, true, TxnRequest, TxnResponse;
        "/etcdserverpb.KV/Compact" => "etcdserverpb.KV", "Compact", Unary, true, CompactionRequest, CompactionResponse;
        "/etcdserverpb.Watch/Watch" => "etcdserverpb.Watch", "Watch", Bidi, false, WatchRequest, WatchResponse;
        "/etcdserverpb.Lease/LeaseGrant" => "etcdserverpb.Lease", "LeaseGrant", Unary, true, LeaseGrantRequest, LeaseGrantResponse;
        "/etcdserverpb.Lease/LeaseRevoke" => "etcdserverpb.Lease", "LeaseRevoke", Unary, true, LeaseRevokeRequest, LeaseRevokeResponse;
        "/etcdserverpb.Lease/LeaseKeepAlive" => "etcdserverpb.Lease", "LeaseKeepAlive", Bidi, true, LeaseKeepAliveRequest, LeaseKeepAliveResponse;
        "/etcdserverpb.Lease/LeaseTimeToLive" => "etcdserverpb.Lease", "LeaseTimeToLive", Unary, false, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse;
        "/etcdserverpb.Lease/LeaseLeases" => "etcdserverpb.Lease", "LeaseLeases", Unary, false, LeaseLeasesRequest, LeaseLeasesResponse;
        "/etcdserverpb.Cluster/MemberAdd" => "etcdserverpb.Cluster", "MemberAdd", Unary, true, MemberAddRequest, MemberAddResponse;
        "/etcdserverpb.Cluster/MemberRemove" => "etcdserverpb.Cluster", "MemberRemove", Unary, true, MemberRemoveRequest, MemberRemoveResponse;
        "/etcdserverpb.Cluster/MemberUpdate" => "etcdserverpb.Cluster", "MemberUpdate", Unary, true, MemberUpdateRequest, MemberUpdateResponse;
        "/etcdserverpb.Cluster/MemberList" => "etcdserverpb.Cluster", "MemberList", Unary, false, MemberListRequest, MemberListResponse;
        "/etcdserverpb.Cluster/MemberPromote" => "etcdserverpb.Cluster", "MemberPromote", Unary, true, MemberPromoteRequest, MemberPromoteResponse;
        "/etcdserverpb.Maintenance/Alarm" => "etcdserverpb.Maintenance", "Alarm", Unary, true, AlarmRequest, AlarmResponse;
        "/etcdserverpb.Maintenance/Status" => "etcdserverpb.Maintenance", "Status", Unary, false, StatusRequest, StatusResponse;
        "/etcdserverpb.Maintenance/Defragment" => "etcdserverpb.Maintenance", "Defragment", Unary, true, DefragmentRequest, DefragmentResponse;
        "/etcdserverpb.Maintenance/Hash" => "etcdserverpb.Maintenance", "Hash", Unary, false, HashRequest, HashResponse;
        "/etcdserverpb.Maintenance/HashKV" => "etcdserverpb.Maintenance", "HashKV", Unary, false, HashKVRequest, HashKVResponse;
        "/etcdserverpb.Maintenance/Snapshot" => "etcdserverpb.Maintenance", "Snapshot", ServerStream, false, SnapshotRequest, SnapshotResponse;
        "/etcdserverpb.Maintenance/MoveLeader" => "etcdserverpb.Maintenance", "MoveLeader", Unary, true, MoveLeaderRequest, MoveLeaderResponse;
        "/etcdserverpb.Maintenance/Downgrade" => "etcdserverpb.Maintenance", "Downgrade", Unary, true, DowngradeRequest, DowngradeResponse;
        "/etcdserverpb.Auth/AuthEnable" => "etcdserverpb.Auth", "AuthEnable", Unary, true, AuthEnableRequest, AuthEnableResponse;
        "/etcdserverpb.Auth/AuthDisable" => "etcdserverpb.Auth", "AuthDisable", Unary, true, AuthDisableRequest, AuthDisableResponse;
        "/etcdserverpb.Auth/AuthStatus" => "etcdserverpb.Auth", "AuthStatus", Unary, false, AuthStatusRequest, AuthStatusResponse;
        "/etcdserverpb.Auth/Authenticate" => "etcdserverpb.Auth", "Authenticate", Unary, false, AuthenticateRequest, AuthenticateResponse;
        "/etcdserverpb.Auth/UserAdd" => "etcdserverpb.Auth", "UserAdd", Unary, true, AuthUserAddRequest, AuthUserAddResponse;
        "/etcdserverpb.Auth/UserGet" => "etcdserverpb.Auth", "UserGet", Unary, false, AuthUserGetRequest, AuthUserGetResponse;
        "/etcdserverpb.Auth/UserList" => "etcdserverpb.Auth", "UserList", Unary, false, AuthUserListRequest, AuthUserListResponse;
        "/etcdserverpb.Auth/UserDelete" => "etcdserverpb.Auth", "UserDelete", Unary, true, AuthUserDeleteRequest, AuthUserDeleteResponse;
        "/etcdserverpb.Auth/UserChangePassword" => "etcdserverpb.Auth", "UserChangePassword", Unary, true, AuthUserChangePasswordRequest, AuthUserChangePasswordResponse;
        "/etcdserverpb.Auth/UserGrantRole" => "etcdserverpb.Auth", "UserGrantRole", Unary, true, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse;
        "/etcdserverpb.Auth/UserRevokeRole" => "etcdserverpb.Auth", "UserRevokeRole", Unary, true, AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse;
        "/etcdserverpb.Auth/RoleAdd" => "etcdserverpb.Auth", "RoleAdd", Unary, true, AuthRoleAddRequest, AuthRoleAddResponse;
        "/etcdserverpb.Auth/RoleGet" => "etcdserverpb.Auth", "RoleGet", Unary, false, AuthRoleGetRequest, AuthRoleGetResponse;
        "/etcdserverpb.Auth/RoleList" => "etcdserverpb.Auth", "RoleList", Unary, false, AuthRoleListRequest, AuthRoleListResponse;
        "/etcdserverpb.Auth/RoleDelete" => "etcdserverpb.Auth", "RoleDelete", Unary, true, AuthRoleDeleteRequest, AuthRoleDeleteResponse;
        "/etcdserverpb.Auth/RoleGrantPermission" => "etcdserverpb.Auth", "RoleGrantPermission", Unary, true, AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse;
        "/etcdserverpb.Auth/RoleRevokePermission" => "etcdserverpb.Auth", "RoleRevokePermission", Unary, true, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse;
        "/v3electionpb.Election/Campaign" => "v3electionpb.Election", "Campaign", Unary, true, CampaignRequest, CampaignResponse;
        "/v3electionpb.Election/Proclaim" => "v3electionpb.Election", "Proclaim", Unary, true, ProclaimRequest, ProclaimResponse;
        "/v3electionpb.Election/Leader" => "v3electionpb.Election", "Leader", Unary, false, LeaderRequest, LeaderResponse;
        "/v3electionpb.Election/Observe" => "v3electionpb.Election", "Observe", ServerStream, false, LeaderRequest, LeaderResponse;
        "/v3electionpb.Election/Resign" => "v3electionpb.Election", "Resign", Unary, true, ResignRequest, ResignResponse;
        "/v3lockpb.Lock/Lock" => "v3lockpb.Lock", "Lock", Unary, true, LockRequest, LockResponse;
        "/v3lockpb.Lock/Unlock" => "v3lockpb.Lock", "Unlock", Unary, true, UnlockRequest, UnlockResponse;
        "/grpc.health.v1.Health/Check" => "grpc.health.v1.Health", "Check", Unary, false, HealthCheckRequest, HealthCheckResponse;
        "/grpc.health.v1.Health/Watch" => "grpc.health.v1.Health", "Watch", ServerStream, false, HealthCheckRequest, HealthCheckResponse;
    }
}

/// Looks up a method by its gRPC `:path`.
pub fn method(path: &str) -> Option<&'static MethodInfo> {
    METHODS.iter().find(|m| m.path == path)
}

/// Decodes a request body (one gRPC message, without its 5-byte prefix) of the method
/// at `path`.
pub fn decode_request(path: &str, bytes: &[u8]) -> Result<EtcdMessage, EtcdDecodeError> {
    decode_request_body(path, bytes)
}

/// Decodes a response body (one gRPC message, without its 5-byte prefix) of the method
/// at `path`.
pub fn decode_response(path: &str, bytes: &[u8]) -> Result<EtcdMessage, EtcdDecodeError> {
    decode_response_body(path, bytes)
}

impl EtcdMessage {
    /// The key a request addresses: Range, Put, DeleteRange, a Watch create request,
    /// a Txn (its first operation's key), Lock/Unlock and election names.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            EtcdMessage::RangeRequest(m) => Some(&m.key),
            EtcdMessage::PutRequest(m) => Some(&m.key),
            EtcdMessage::DeleteRangeRequest(m) => Some(&m.key),
            EtcdMessage::WatchRequest(m) => match &m.request_union {
                Some(watch_request::RequestUnion::CreateRequest(c)) => Some(&c.key),
                _ => None,
            },
            EtcdMessage::TxnRequest(m) => m.first_key_range().map(|(key, _)| key),
            EtcdMessage::LockRequest(m) => Some(&m.name),
            EtcdMessage::UnlockRequest(m) => Some(&m.key),
            EtcdMessage::CampaignRequest(m) => Some(&m.name),
            EtcdMessage::LeaderRequest(m) => Some(&m.name),
            _ => None,
        }
    }

    /// The range end of a request that addresses a key range (Range, DeleteRange, Watch
    /// create, Txn's first operation); empty means "just the key".
    pub fn range_end(&self) -> Option<&[u8]> {
        match self {
            EtcdMessage::RangeRequest(m) => Some(&m.range_end),
            EtcdMessage::DeleteRangeRequest(m) => Some(&m.range_end),
            EtcdMessage::WatchRequest(m) => match &m.request_union {
                Some(watch_request::RequestUnion::CreateRequest(c)) => Some(&c.range_end),
                _ => None,
            },
            EtcdMessage::TxnRequest(m) => m.first_key_range().map(|(_, end)| end),
            _ => None,
        }
    }

    /// How many key-values a response carries (range results, previous values, watch
    /// events, an election leader); None for messages that carry none by design.
    pub fn kv_count(&self) -> Option<usize> {
        match self {
            EtcdMessage::RangeResponse(m) => Some(m.kvs.len()),
            EtcdMessage::RangeStreamResponse(m) => {
                Some(m.range_response.as_ref().map_or(0, |r| r.kvs.len()))
            }
            EtcdMessage::PutResponse(m) => Some(usize::from(m.prev_kv.is_some())),
            EtcdMessage::DeleteRangeResponse(m) => Some(m.prev_kvs.len()),
            EtcdMessage::TxnResponse(m) => Some(m.kv_count()),
            EtcdMessage::WatchResponse(m) => Some(m.events.len()),
            EtcdMessage::LeaderResponse(m) => Some(usize::from(m.kv.is_some())),
            _ => None,
        }
    }

    /// The response header, for responses that carry one.
    pub fn response_header(&self) -> Option<&ResponseHeader> {
        match self {
            EtcdMessage::RangeStreamResponse(m) => {
                m.range_response.as_ref().and_then(|r| r.header.as_ref())
            }
            _ => self.header_field(),
        }
    }

    /// Replaces secrets (passwords, hashed passwords, auth tokens) with [`REDACTED`].
    /// Empty secrets stay empty.
    pub fn redact(&mut self) {
        match self {
            EtcdMessage::AuthenticateRequest(m) => auth::redact_string(&mut m.password),
            EtcdMessage::AuthenticateResponse(m) => auth::redact_string(&mut m.token),
            EtcdMessage::AuthUserAddRequest(m) => {
                auth::redact_string(&mut m.password);
                auth::redact_string(&mut m.hashed_password);
            }
            EtcdMessage::AuthUserChangePasswordRequest(m) => {
                auth::redact_string(&mut m.password);
                auth::redact_string(&mut m.hashed_password);
            }
            _ => {}
        }
    }
}

impl serde::Serialize for EtcdMessage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// Renders a key for humans: as text when it is printable UTF-8, otherwise with
/// non-printable bytes escaped as `\xNN` (and `\` as `\\`).
pub fn display_key(key: &[u8]) -> String {
    if let Ok(text) = std::str::from_utf8(key) {
        if !text.chars().any(|c| c.is_control() || c == '\\') {
            return text.to_string();
        }
    }
    let mut out = String::with_capacity(key.len().saturating_mul(2));
    for &b in key {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// The range end etcd's clients use for "every key with this prefix": the prefix with
/// trailing 0xff bytes dropped and the last remaining byte incremented; `\0` (every key
/// from the prefix on) when the prefix is all 0xff or empty.
pub fn prefix_range_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last.saturating_add(1));
            return end;
        }
    }
    vec![0]
}

/// Describes the keys a (key, range_end) pair selects, following etcd's range rules.
pub fn describe_range(key: &[u8], range_end: &[u8]) -> String {
    if range_end.is_empty() {
        return display_key(key);
    }
    if range_end == [0] {
        if key == [0] || key.is_empty() {
            return "(whole keyspace)".to_string();
        }
        return format!(">= {}", display_key(key));
    }
    if !key.is_empty() && range_end == prefix_range_end(key).as_slice() {
        return format!("prefix {}*", display_key(key));
    }
    format!("[{}, {})", display_key(key), display_key(range_end))
}

#[cfg(test)]
mod tests;
