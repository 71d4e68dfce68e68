//! mvccpb: the stored key-value and the watch event, shared by the KV, Watch and
//! election messages.

use serde::Serialize;

use super::json::{self, proto_enum};

/// mvccpb.KeyValue: one key at one revision.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub key: Vec<u8>,
    #[prost(int64, tag = "2")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub create_revision: i64,
    #[prost(int64, tag = "3")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub mod_revision: i64,
    #[prost(int64, tag = "4")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub version: i64,
    #[prost(bytes = "vec", tag = "5")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub value: Vec<u8>,
    #[prost(int64, tag = "6")]
    #[serde(
        serialize_with = "json::i64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub lease: i64,
}

proto_enum! {
    /// mvccpb.Event.EventType.
    pub enum EventType {
        Put = 0 => "PUT",
        Delete = 1 => "DELETE",
    }
}

/// mvccpb.Event: one change seen by a watcher.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[prost(enumeration = "EventType", tag = "1")]
    #[serde(
        serialize_with = "EventType::json",
        skip_serializing_if = "json::is_default"
    )]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kv: Option<KeyValue>,
    #[prost(message, optional, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev_kv: Option<KeyValue>,
}
