//! etcdserverpb Watch service messages (one bidirectional stream per client connection,
//! many watchers multiplexed on it by watch id).

use serde::Serialize;

use super::json::{self, proto_enum};
use super::kv::ResponseHeader;
use super::mvcc::Event;

/// etcdserverpb.WatchRequest: create, cancel or ask for progress.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchRequest {
    #[prost(oneof = "watch_request::RequestUnion", tags = "1, 2, 3")]
    #[serde(flatten)]
    pub request_union: Option<watch_request::RequestUnion>,
}

/// The oneof of [`WatchRequest`].
pub mod watch_request {
    use serde::Serialize;

    /// etcdserverpb.WatchRequest.request_union.
    #[derive(Clone, PartialEq, prost::Oneof, Serialize)]
    #[serde(rename_all = "camelCase")]
    pub enum RequestUnion {
        #[prost(message, tag = "1")]
        CreateRequest(super::WatchCreateRequest),
        #[prost(message, tag = "2")]
        CancelRequest(super::WatchCancelRequest),
        #[prost(message, tag = "3")]
        ProgressRequest(super::WatchProgressRequest),
    }
}

proto_enum! {
    /// etcdserverpb.WatchCreateRequest.FilterType.
    pub enum FilterType {
        Noput = 0 => "NOPUT",
        Nodelete = 1 => "NODELETE",
    }
}

/// etcdserverpb.WatchCreateRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchCreateRequest {
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
    pub start_revision: i64,
    #[prost(bool, tag = "4")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub progress_notify: bool,
    #[prost(enumeration = "FilterType", repeated, tag = "5")]
    #[serde(
        serialize_with = "FilterType::json_list",
        skip_serializing_if = "json::is_default"
    )]
    pub filters: Vec<i32>,
    #[prost(bool, tag = "6")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub prev_kv: bool,
    #[prost(int64, tag = "7")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub watch_id: i64,
    #[prost(bool, tag = "8")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub fragment: bool,
}

/// etcdserverpb.WatchCancelRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchCancelRequest {
    #[prost(int64, tag = "1")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub watch_id: i64,
}

/// etcdserverpb.WatchProgressRequest (no fields).
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct WatchProgressRequest {}

/// etcdserverpb.WatchResponse: creation/cancel acknowledgements and event batches.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub watch_id: i64,
    #[prost(bool, tag = "3")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub created: bool,
    #[prost(bool, tag = "4")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub canceled: bool,
    #[prost(int64, tag = "5")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub compact_revision: i64,
    #[prost(string, tag = "6")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub cancel_reason: String,
    #[prost(bool, tag = "7")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub fragment: bool,
    #[prost(message, repeated, tag = "11")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub events: Vec<Event>,
}
