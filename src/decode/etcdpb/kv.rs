//! etcdserverpb KV service messages (Range, Put, DeleteRange, Txn, Compact) and the
//! ResponseHeader that every etcd response carries.

use serde::Serialize;

use super::json::{self, proto_enum};
use super::mvcc::KeyValue;

/// etcdserverpb.ResponseHeader: which member answered, at which revision and raft term.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseHeader {
    #[prost(uint64, tag = "1")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub cluster_id: u64,
    #[prost(uint64, tag = "2")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub member_id: u64,
    #[prost(int64, tag = "3")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub revision: i64,
    #[prost(uint64, tag = "4")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub raft_term: u64,
}

proto_enum! {
    /// etcdserverpb.RangeRequest.SortOrder.
    pub enum SortOrder {
        None = 0 => "NONE",
        Ascend = 1 => "ASCEND",
        Descend = 2 => "DESCEND",
    }
}

proto_enum! {
    /// etcdserverpb.RangeRequest.SortTarget.
    pub enum SortTarget {
        Key = 0 => "KEY",
        Version = 1 => "VERSION",
        Create = 2 => "CREATE",
        Mod = 3 => "MOD",
        Value = 4 => "VALUE",
    }
}

/// etcdserverpb.RangeRequest: a read of one key or a key range.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub limit: i64,
    #[prost(int64, tag = "4")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub revision: i64,
    #[prost(enumeration = "SortOrder", tag = "5")]
    #[serde(
        serialize_with = "SortOrder::json",
        skip_serializing_if = "json::is_default"
    )]
    pub sort_order: i32,
    #[prost(enumeration = "SortTarget", tag = "6")]
    #[serde(
        serialize_with = "SortTarget::json",
        skip_serializing_if = "json::is_default"
    )]
    pub sort_target: i32,
    #[prost(bool, tag = "7")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub serializable: bool,
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub keys_only: bool,
    #[prost(bool, tag = "9")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub count_only: bool,
    #[prost(int64, tag = "10")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub min_mod_revision: i64,
    #[prost(int64, tag = "11")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub max_mod_revision: i64,
    #[prost(int64, tag = "12")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub min_create_revision: i64,
    #[prost(int64, tag = "13")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub max_create_revision: i64,
}

/// etcdserverpb.RangeResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub kvs: Vec<KeyValue>,
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub more: bool,
    #[prost(int64, tag = "4")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub count: i64,
}

/// etcdserverpb.RangeStreamResponse (KV.RangeStream, newer etcd only).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeStreamResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub range_response: Option<RangeResponse>,
}

/// etcdserverpb.PutRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub value: Vec<u8>,
    #[prost(int64, tag = "3")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub lease: i64,
    #[prost(bool, tag = "4")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub prev_kv: bool,
    #[prost(bool, tag = "5")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub ignore_value: bool,
    #[prost(bool, tag = "6")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub ignore_lease: bool,
}

/// etcdserverpb.PutResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PutResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_kv: Option<KeyValue>,
}

/// etcdserverpb.DeleteRangeRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteRangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub range_end: Vec<u8>,
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub prev_kv: bool,
}

/// etcdserverpb.DeleteRangeResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteRangeResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub deleted: i64,
    #[prost(message, repeated, tag = "3")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub prev_kvs: Vec<KeyValue>,
}

/// etcdserverpb.RequestOp: one operation inside a transaction branch.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestOp {
    #[prost(oneof = "request_op::Request", tags = "1, 2, 3, 4")]
    #[serde(flatten)]
    pub request: Option<request_op::Request>,
}

/// The oneof of [`RequestOp`].
pub mod request_op {
    use serde::Serialize;

    /// etcdserverpb.RequestOp.request.
    #[derive(Clone, PartialEq, prost::Oneof, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub enum Request {
        #[prost(message, tag = "1")]
        RequestRange(super::RangeRequest),
        #[prost(message, tag = "2")]
        RequestPut(super::PutRequest),
        #[prost(message, tag = "3")]
        RequestDeleteRange(super::DeleteRangeRequest),
        #[prost(message, tag = "4")]
        RequestTxn(super::TxnRequest),
    }
}

impl RequestOp {
    /// The key and range end the operation touches (a nested Txn: its first operation's).
    pub fn key_range(&self) -> Option<(&[u8], &[u8])> {
        match self.request.as_ref()? {
            request_op::Request::RequestRange(r) => Some((&r.key, &r.range_end)),
            request_op::Request::RequestPut(r) => Some((&r.key, &[])),
            request_op::Request::RequestDeleteRange(r) => Some((&r.key, &r.range_end)),
            request_op::Request::RequestTxn(t) => t.first_key_range(),
        }
    }
}

/// etcdserverpb.ResponseOp: the result of one [`RequestOp`].
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseOp {
    #[prost(oneof = "response_op::Response", tags = "1, 2, 3, 4")]
    #[serde(flatten)]
    pub response: Option<response_op::Response>,
}

/// The oneof of [`ResponseOp`].
pub mod response_op {
    use serde::Serialize;

    /// etcdserverpb.ResponseOp.response.
    #[derive(Clone, PartialEq, prost::Oneof, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub enum Response {
        #[prost(message, tag = "1")]
        ResponseRange(super::RangeResponse),
        #[prost(message, tag = "2")]
        ResponsePut(super::PutResponse),
        #[prost(message, tag = "3")]
        ResponseDeleteRange(super::DeleteRangeResponse),
        #[prost(message, tag = "4")]
        ResponseTxn(super::TxnResponse),
    }
}

impl ResponseOp {
    /// Key-values carried by this result (range kvs, prev kvs), counted recursively.
    pub fn kv_count(&self) -> usize {
        match &self.response {
            None => 0,
            Some(response_op::Response::ResponseRange(r)) => r.kvs.len(),
            Some(response_op::Response::ResponsePut(r)) => usize::from(r.prev_kv.is_some()),
            Some(response_op::Response::ResponseDeleteRange(r)) => r.prev_kvs.len(),
            Some(response_op::Response::ResponseTxn(t)) => t.kv_count(),
        }
    }
}

proto_enum! {
    /// etcdserverpb.Compare.CompareResult.
    pub enum CompareResult {
        Equal = 0 => "EQUAL",
        Greater = 1 => "GREATER",
        Less = 2 => "LESS",
        NotEqual = 3 => "NOT_EQUAL",
    }
}

proto_enum! {
    /// etcdserverpb.Compare.CompareTarget.
    pub enum CompareTarget {
        Version = 0 => "VERSION",
        Create = 1 => "CREATE",
        Mod = 2 => "MOD",
        Value = 3 => "VALUE",
        Lease = 4 => "LEASE",
    }
}

/// etcdserverpb.Compare: one guard of a transaction.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Compare {
    #[prost(enumeration = "CompareResult", tag = "1")]
    #[serde(
        serialize_with = "CompareResult::json",
        skip_serializing_if = "json::is_default"
    )]
    pub result: i32,
    #[prost(enumeration = "CompareTarget", tag = "2")]
    #[serde(
        serialize_with = "CompareTarget::json",
        skip_serializing_if = "json::is_default"
    )]
    pub target: i32,
    #[prost(bytes = "vec", tag = "3")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub key: Vec<u8>,
    #[prost(oneof = "compare::TargetUnion", tags = "4, 5, 6, 7, 8")]
    #[serde(flatten)]
    pub target_union: Option<compare::TargetUnion>,
    #[prost(bytes = "vec", tag = "64")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub range_end: Vec<u8>,
}

/// The oneof of [`Compare`].
pub mod compare {
    use super::json;
    use serde::Serialize;

    /// etcdserverpb.Compare.target_union: the value compared against.
    #[derive(Clone, PartialEq, prost::Oneof, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub enum TargetUnion {
        #[prost(int64, tag = "4")]
        #[serde(serialize_with = "json::i64_str")]
        Version(i64),
        #[prost(int64, tag = "5")]
        #[serde(serialize_with = "json::i64_str")]
        CreateRevision(i64),
        #[prost(int64, tag = "6")]
        #[serde(serialize_with = "json::i64_str")]
        ModRevision(i64),
        #[prost(bytes, tag = "7")]
        #[serde(serialize_with = "json::bytes")]
        Value(Vec<u8>),
        #[prost(int64, tag = "8")]
        #[serde(serialize_with = "json::i64_str")]
        Lease(i64),
    }
}

/// etcdserverpb.TxnRequest: compare, then run `success` or `failure`.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TxnRequest {
    #[prost(message, repeated, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub compare: Vec<Compare>,
    #[prost(message, repeated, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub success: Vec<RequestOp>,
    #[prost(message, repeated, tag = "3")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub failure: Vec<RequestOp>,
}

impl TxnRequest {
    /// The key range of the first operation (success branch first, then failure), or of
    /// the first comparison when both branches are empty.
    pub fn first_key_range(&self) -> Option<(&[u8], &[u8])> {
        if let Some(op) = self.success.first().or(self.failure.first()) {
            return op.key_range();
        }
        self.compare
            .first()
            .map(|c| (c.key.as_slice(), c.range_end.as_slice()))
    }
}

/// etcdserverpb.TxnResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TxnResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(bool, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub succeeded: bool,
    #[prost(message, repeated, tag = "3")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub responses: Vec<ResponseOp>,
}

impl TxnResponse {
    /// Key-values carried by all results.
    pub fn kv_count(&self) -> usize {
        self.responses
            .iter()
            .fold(0usize, |n, r| n.saturating_add(r.kv_count()))
    }
}

/// etcdserverpb.CompactionRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactionRequest {
    #[prost(int64, tag = "1")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub revision: i64,
    #[prost(bool, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub physical: bool,
}

/// etcdserverpb.CompactionResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CompactionResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
}
