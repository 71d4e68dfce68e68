//! etcdserverpb.InternalRaftRequest: what etcd proposes through raft, and so what a WAL
//! entry's data holds. It wraps the client request (put, txn, lease grant, ...) with a
//! header naming the request ID and user. etcd 3.4 still proposes a few v2 requests
//! (member publish, cluster version) as a bare etcdserverpb.Request: [`decode_entry_data`]
//! tells the two apart the way etcd does.

use serde::Serialize;

use super::auth::{
    redact_string, AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest,
    AuthRoleDeleteRequest, AuthRoleGetRequest, AuthRoleGrantPermissionRequest, AuthRoleListRequest,
    AuthRoleRevokePermissionRequest, AuthStatusRequest, AuthUserAddRequest,
    AuthUserChangePasswordRequest, AuthUserDeleteRequest, AuthUserGetRequest,
    AuthUserGrantRoleRequest, AuthUserListRequest, AuthUserRevokeRoleRequest,
};
use super::json;
use super::kv::{CompactionRequest, DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest};
use super::lease::{LeaseCheckpointRequest, LeaseGrantRequest, LeaseRevokeRequest};
use super::maintenance::AlarmRequest;

/// etcdserverpb.RequestHeader: the request ID (matches the client's request in etcd's
/// wait registry) and the authenticated user.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestHeader {
    #[prost(uint64, tag = "1")]
    #[serde(
        rename = "ID",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: u64,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub username: String,
    #[prost(uint64, tag = "3")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub auth_revision: u64,
}

/// etcdserverpb.InternalAuthenticateRequest: `password` and `simple_token` are secrets.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalAuthenticateRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub name: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub password: String,
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub simple_token: String,
}

/// membershippb.Attributes: a member's name and client URLs.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberAttributes {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub name: String,
    #[prost(string, repeated, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub client_urls: Vec<String>,
}

/// membershippb.ClusterVersionSetRequest (etcd 3.5+).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ClusterVersionSetRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub ver: String,
}

/// membershippb.ClusterMemberAttrSetRequest (etcd 3.5+).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterMemberAttrSetRequest {
    #[prost(uint64, tag = "1")]
    #[serde(
        rename = "memberID",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub member_id: u64,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_attributes: Option<MemberAttributes>,
}

/// membershippb.DowngradeInfoSetRequest (etcd 3.5+).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct DowngradeInfoSetRequest {
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub enabled: bool,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub ver: String,
}

/// etcdserverpb.DowngradeVersionTestRequest (etcd 3.6+, tests only).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct DowngradeVersionTestRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub ver: String,
}

/// etcdserverpb.Request: the v2 store request (proto2), still proposed by etcd 3.4 for
/// member attributes and the cluster version.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct V2Request {
    #[prost(uint64, tag = "1")]
    #[serde(
        rename = "ID",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: u64,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub method: String,
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub path: String,
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub val: String,
    #[prost(bool, tag = "5")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub dir: bool,
    #[prost(string, tag = "6")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub prev_value: String,
    #[prost(uint64, tag = "7")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub prev_index: u64,
    #[prost(bool, optional, tag = "8")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_exist: Option<bool>,
    #[prost(int64, tag = "9")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub expiration: i64,
    #[prost(bool, tag = "10")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub wait: bool,
    #[prost(uint64, tag = "11")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub since: u64,
    #[prost(bool, tag = "12")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub recursive: bool,
    #[prost(bool, tag = "13")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub sorted: bool,
    #[prost(bool, tag = "14")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub quorum: bool,
    #[prost(int64, tag = "15")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub time: i64,
    #[prost(bool, tag = "16")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub stream: bool,
    #[prost(bool, optional, tag = "17")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh: Option<bool>,
}

/// etcdserverpb.InternalRaftRequest: exactly one operation field is set in practice.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InternalRaftRequest {
    #[prost(message, optional, tag = "100")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<RequestHeader>,
    #[prost(uint64, tag = "1")]
    #[serde(
        rename = "ID",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: u64,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub v2: Option<V2Request>,
    #[prost(message, optional, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range: Option<RangeRequest>,
    #[prost(message, optional, tag = "4")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub put: Option<PutRequest>,
    #[prost(message, optional, tag = "5")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delete_range: Option<DeleteRangeRequest>,
    #[prost(message, optional, tag = "6")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub txn: Option<TxnRequest>,
    #[prost(message, optional, tag = "7")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compaction: Option<CompactionRequest>,
    #[prost(message, optional, tag = "8")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_grant: Option<LeaseGrantRequest>,
    #[prost(message, optional, tag = "9")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_revoke: Option<LeaseRevokeRequest>,
    #[prost(message, optional, tag = "10")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alarm: Option<AlarmRequest>,
    #[prost(message, optional, tag = "11")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_checkpoint: Option<LeaseCheckpointRequest>,
    #[prost(message, optional, tag = "1000")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_enable: Option<AuthEnableRequest>,
    #[prost(message, optional, tag = "1011")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_disable: Option<AuthDisableRequest>,
    #[prost(message, optional, tag = "1012")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authenticate: Option<InternalAuthenticateRequest>,
    #[prost(message, optional, tag = "1013")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_status: Option<AuthStatusRequest>,
    #[prost(message, optional, tag = "1100")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_user_add: Option<AuthUserAddRequest>,
    #[prost(message, optional, tag = "1101")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_user_delete: Option<AuthUserDeleteRequest>,
    #[prost(message, optional, tag = "1102")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_user_get: Option<AuthUserGetRequest>,
    #[prost(message, optional, tag = "1103")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_user_change_password: Option<AuthUserChangePasswordRequest>,
    #[prost(message, optional, tag = "1104")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_user_grant_role: Option<AuthUserGrantRoleRequest>,
    #[prost(message, optional, tag = "1105")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_user_revoke_role: Option<AuthUserRevokeRoleRequest>,
    #[prost(message, optional, tag = "1106")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_user_list: Option<AuthUserListRequest>,
    #[prost(message, optional, tag = "1107")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_role_list: Option<AuthRoleListRequest>,
    #[prost(message, optional, tag = "1200")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_role_add: Option<AuthRoleAddRequest>,
    #[prost(message, optional, tag = "1201")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_role_delete: Option<AuthRoleDeleteRequest>,
    #[prost(message, optional, tag = "1202")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_role_get: Option<AuthRoleGetRequest>,
    #[prost(message, optional, tag = "1203")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_role_grant_permission: Option<AuthRoleGrantPermissionRequest>,
    #[prost(message, optional, tag = "1204")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_role_revoke_permission: Option<AuthRoleRevokePermissionRequest>,
    #[prost(message, optional, tag = "1300")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_version_set: Option<ClusterVersionSetRequest>,
    #[prost(message, optional, tag = "1301")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_member_attr_set: Option<ClusterMemberAttrSetRequest>,
    #[prost(message, optional, tag = "1302")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downgrade_info_set: Option<DowngradeInfoSetRequest>,
    #[prost(message, optional, tag = "9900")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downgrade_version_test: Option<DowngradeVersionTestRequest>,
}

/// The gist of a raft request for timelines: which operation, on which keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RaftRequestSummary<'a> {
    /// The request ID: the header's, or the top-level ID of etcd 3.0 requests.
    pub id: u64,
    /// The operation, named after the InternalRaftRequest field (`put`, `txn`, ...),
    /// `empty` when none is set.
    pub op: &'static str,
    /// The key (for a txn: its first operation's key).
    pub key: Option<&'a [u8]>,
    /// The range end, when the operation has one and it is not empty.
    pub range_end: Option<&'a [u8]>,
    /// The value size of a put.
    pub value_len: Option<usize>,
    /// The lease: attached to a put, or granted/revoked.
    pub lease: Option<i64>,
}

impl InternalRaftRequest {
    /// The request ID etcd matches the applied entry to the waiting client with.
    pub fn request_id(&self) -> u64 {
        match &self.header {
            Some(h) if h.id != 0 => h.id,
            _ => self.id,
        }
    }

    /// The operation and the keys it touches.
    pub fn summary(&self) -> RaftRequestSummary<'_> {
        let mut s = RaftRequestSummary {
            id: self.request_id(),
            op: self.op_name(),
            key: None,
            range_end: None,
            value_len: None,
            lease: None,
        };
        let non_empty = |b: &'_ [u8]| -> bool { !b.is_empty() };
        if let Some(r) = &self.range {
            s.key = Some(&r.key);
            s.range_end = Some(r.range_end.as_slice()).filter(|b| non_empty(b));
        } else if let Some(p) = &self.put {
            s.key = Some(&p.key);
            s.value_len = Some(p.value.len());
            s.lease = Some(p.lease).filter(|&l| l != 0);
        } else if let Some(d) = &self.delete_range {
            s.key = Some(&d.key);
            s.range_end = Some(d.range_end.as_slice()).filter(|b| non_empty(b));
        } else if let Some(t) = &self.txn {
            if let Some((key, end)) = t.first_key_range() {
                s.key = Some(key);
                s.range_end = Some(end).filter(|b| non_empty(b));
            }
        } else if let Some(g) = &self.lease_grant {
            s.lease = Some(g.id);
        } else if let Some(r) = &self.lease_revoke {
            s.lease = Some(r.id);
        } else if let Some(v2) = &self.v2 {
            s.key = Some(v2.path.as_bytes());
            s.value_len = Some(v2.val.len());
        }
        s
    }

    /// The name of the operation field that is set (the first one, in field order).
    pub fn op_name(&self) -> &'static str {
        let ops: [(&'static str, bool); 32] = [
            ("v2", self.v2.is_some()),
            ("range", self.range.is_some()),
            ("put", self.put.is_some()),
            ("delete_range", self.delete_range.is_some()),
            ("txn", self.txn.is_some()),
            ("compaction", self.compaction.is_some()),
            ("lease_grant", self.lease_grant.is_some()),
            ("lease_revoke", self.lease_revoke.is_some()),
            ("alarm", self.alarm.is_some()),
            ("lease_checkpoint", self.lease_checkpoint.is_some()),
            ("auth_enable", self.auth_enable.is_some()),
            ("auth_disable", self.auth_disable.is_some()),
            ("authenticate", self.authenticate.is_some()),
            ("auth_status", self.auth_status.is_some()),
            ("auth_user_add", self.auth_user_add.is_some()),
            ("auth_user_delete", self.auth_user_delete.is_some()),
            ("auth_user_get", self.auth_user_get.is_some()),
            (
                "auth_user_change_password",
                self.auth_user_change_password.is_some(),
            ),
            ("auth_user_grant_role", self.auth_user_grant_role.is_some()),
            (
                "auth_user_revoke_role",
                self.auth_user_revoke_role.is_some(),
            ),
            ("auth_user_list", self.auth_user_list.is_some()),
            ("auth_role_list", self.auth_role_list.is_some()),
            ("auth_role_add", self.auth_role_add.is_some()),
            ("auth_role_delete", self.auth_role_delete.is_some()),
            ("auth_role_get", self.auth_role_get.is_some()),
            (
                "auth_role_grant_permission",
                self.auth_role_grant_permission.is_some(),
            ),
            (
                "auth_role_revoke_permission",
                self.auth_role_revoke_permission.is_some(),
            ),
            ("cluster_version_set", self.cluster_version_set.is_some()),
            (
                "cluster_member_attr_set",
                self.cluster_member_attr_set.is_some(),
            ),
            ("downgrade_info_set", self.downgrade_info_set.is_some()),
            (
                "downgrade_version_test",
                self.downgrade_version_test.is_some(),
            ),
            ("empty", true),
        ];
        ops.iter()
            .find(|(_, set)| *set)
            .map_or("empty", |(name, _)| name)
    }

    /// Replaces the secrets a raft request can carry (passwords, simple tokens).
    pub fn redact(&mut self) {
        if let Some(a) = &mut self.authenticate {
            redact_string(&mut a.password);
            redact_string(&mut a.simple_token);
        }
        if let Some(a) = &mut self.auth_user_add {
            redact_string(&mut a.password);
            redact_string(&mut a.hashed_password);
        }
        if let Some(a) = &mut self.auth_user_change_password {
            redact_string(&mut a.password);
            redact_string(&mut a.hashed_password);
        }
    }
}

/// What a normal raft entry's data decodes to.
#[derive(Clone, PartialEq, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum EntryRequest {
    /// An etcdserverpb.InternalRaftRequest (every v3 operation).
    Internal(Box<InternalRaftRequest>),
    /// A bare v2 etcdserverpb.Request (etcd 3.4 and older).
    V2(V2Request),
}

/// Decodes a normal entry's data as etcd applies it: an InternalRaftRequest, or when that
/// fails, a bare v2 Request. Returns the InternalRaftRequest error when both fail.
pub fn decode_entry_data(data: &[u8]) -> Result<EntryRequest, prost::DecodeError> {
    use prost::Message;
    match InternalRaftRequest::decode(data) {
        Ok(r) => Ok(EntryRequest::Internal(Box::new(r))),
        Err(e) => V2Request::decode(data).map(EntryRequest::V2).map_err(|_| e),
    }
}
