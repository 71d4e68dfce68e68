//! etcdserverpb Lease service messages, plus the lease checkpoint request that only
//! travels through raft.

use serde::Serialize;

use super::json;
use super::kv::ResponseHeader;

/// etcdserverpb.LeaseGrantRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaseGrantRequest {
    #[prost(int64, tag = "1")]
    #[serde(
        rename = "TTL",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub ttl: i64,
    #[prost(int64, tag = "2")]
    #[serde(
        rename = "ID",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: i64,
}

/// etcdserverpb.LeaseGrantResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaseGrantResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    #[serde(
        rename = "ID",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: i64,
    #[prost(int64, tag = "3")]
    #[serde(
        rename = "TTL",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub ttl: i64,
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub error: String,
}

/// etcdserverpb.LeaseRevokeRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaseRevokeRequest {
    #[prost(int64, tag = "1")]
    #[serde(
        rename = "ID",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: i64,
}

/// etcdserverpb.LeaseRevokeResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaseRevokeResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
}

/// etcdserverpb.LeaseCheckpoint: a lease's remaining TTL, persisted through raft.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaseCheckpoint {
    #[prost(int64, tag = "1")]
    #[serde(
        rename = "ID",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: i64,
    #[prost(int64, tag = "2")]
    #[serde(
        rename = "remainingTTL",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub remaining_ttl: i64,
}

/// etcdserverpb.LeaseCheckpointRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaseCheckpointRequest {
    #[prost(message, repeated, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub checkpoints: Vec<LeaseCheckpoint>,
}

/// etcdserverpb.LeaseKeepAliveRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaseKeepAliveRequest {
    #[prost(int64, tag = "1")]
    #[serde(
        rename = "ID",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: i64,
}

/// etcdserverpb.LeaseKeepAliveResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaseKeepAliveResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    #[serde(
        rename = "ID",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: i64,
    #[prost(int64, tag = "3")]
    #[serde(
        rename = "TTL",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub ttl: i64,
}

/// etcdserverpb.LeaseTimeToLiveRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaseTimeToLiveRequest {
    #[prost(int64, tag = "1")]
    #[serde(
        rename = "ID",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: i64,
    #[prost(bool, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub keys: bool,
}

/// etcdserverpb.LeaseTimeToLiveResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaseTimeToLiveResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    #[serde(
        rename = "ID",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: i64,
    #[prost(int64, tag = "3")]
    #[serde(
        rename = "TTL",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub ttl: i64,
    #[prost(int64, tag = "4")]
    #[serde(
        rename = "grantedTTL",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub granted_ttl: i64,
    #[prost(bytes = "vec", repeated, tag = "5")]
    #[serde(
        serialize_with = "json::bytes_list",
        skip_serializing_if = "json::is_default"
    )]
    pub keys: Vec<Vec<u8>>,
}

/// etcdserverpb.LeaseLeasesRequest (no fields).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaseLeasesRequest {}

/// etcdserverpb.LeaseStatus.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaseStatus {
    #[prost(int64, tag = "1")]
    #[serde(
        rename = "ID",
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: i64,
}

/// etcdserverpb.LeaseLeasesResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaseLeasesResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub leases: Vec<LeaseStatus>,
}
