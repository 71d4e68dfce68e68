//! v3electionpb: the Election service that etcd serves beside the KV API (leader
//! election built on leases and keys).

use serde::Serialize;

use super::json;
use super::kv::ResponseHeader;
use super::mvcc::KeyValue;

/// v3electionpb.LeaderKey: the key that holds leadership.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaderKey {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub key: Vec<u8>,
    #[prost(int64, tag = "3")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub rev: i64,
    #[prost(int64, tag = "4")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub lease: i64,
}

/// v3electionpb.CampaignRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct CampaignRequest {
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
    #[prost(bytes = "vec", tag = "3")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub value: Vec<u8>,
}

/// v3electionpb.CampaignResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct CampaignResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderKey>,
}

/// v3electionpb.ProclaimRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ProclaimRequest {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderKey>,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub value: Vec<u8>,
}

/// v3electionpb.LeaderRequest (Leader and Observe).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaderRequest {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub name: Vec<u8>,
}

/// v3electionpb.LeaderResponse (Leader and Observe).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct LeaderResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv: Option<KeyValue>,
}

/// v3electionpb.ResignRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct ResignRequest {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<LeaderKey>,
}

header_only_response! {
    /// v3electionpb.ProclaimResponse.
    ProclaimResponse;
    /// v3electionpb.ResignResponse.
    ResignResponse;
}
