//! v3lockpb: the Lock service that etcd serves beside the KV API (distributed locks
//! built on leases and keys).

use serde::Serialize;

use super::json;
use super::kv::ResponseHeader;

/// v3lockpb.LockRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LockRequest {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub name: Vec<u8>,
    #[prost(int64, tag = "2")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub lease: i64,
}

/// v3lockpb.LockResponse: `key` is the lock's ownership key.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LockResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub key: Vec<u8>,
}

/// v3lockpb.UnlockRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct UnlockRequest {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub key: Vec<u8>,
}

header_only_response! {
    /// v3lockpb.UnlockResponse.
    UnlockResponse;
}
