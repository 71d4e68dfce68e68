//! etcdserverpb Cluster service messages (membership changes and listing).

use serde::Serialize;

use super::json;
use super::kv::ResponseHeader;

/// etcdserverpb.Member.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Member {
    #[prost(uint64, tag = "1")]
    #[serde(
        rename = "ID",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: u64,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub name: String,
    #[prost(string, repeated, tag = "3")]
    #[serde(rename = "peerURLs", skip_serializing_if = "json::is_default")]
    pub peer_urls: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    #[serde(rename = "clientURLs", skip_serializing_if = "json::is_default")]
    pub client_urls: Vec<String>,
    #[prost(bool, tag = "5")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub is_learner: bool,
}

/// etcdserverpb.MemberAddRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberAddRequest {
    #[prost(string, repeated, tag = "1")]
    #[serde(rename = "peerURLs", skip_serializing_if = "json::is_default")]
    pub peer_urls: Vec<String>,
    #[prost(bool, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub is_learner: bool,
}

/// etcdserverpb.MemberAddResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MemberAddResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<Member>,
    #[prost(message, repeated, tag = "3")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub members: Vec<Member>,
}

/// etcdserverpb.MemberRemoveRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MemberRemoveRequest {
    #[prost(uint64, tag = "1")]
    #[serde(
        rename = "ID",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: u64,
}

/// etcdserverpb.MemberUpdateRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MemberUpdateRequest {
    #[prost(uint64, tag = "1")]
    #[serde(
        rename = "ID",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: u64,
    #[prost(string, repeated, tag = "2")]
    #[serde(rename = "peerURLs", skip_serializing_if = "json::is_default")]
    pub peer_urls: Vec<String>,
}

/// etcdserverpb.MemberListRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MemberListRequest {
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub linearizable: bool,
}

/// etcdserverpb.MemberPromoteRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct MemberPromoteRequest {
    #[prost(uint64, tag = "1")]
    #[serde(
        rename = "ID",
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub id: u64,
}

/// Declares a response that carries the header and the member list (Remove, Update,
/// List and Promote all share this shape).
macro_rules! members_response {
    ($($(#[$meta:meta])* $name:ident;)*) => {$(
        $(#[$meta])*
        #[derive(Clone, PartialEq, prost::Message, Serialize)]
        pub struct $name {
            #[prost(message, optional, tag = "1")]
            #[serde(skip_serializing_if = "Option::is_none")]
            pub header: Option<ResponseHeader>,
            #[prost(message, repeated, tag = "2")]
            #[serde(skip_serializing_if = "json::is_default")]
            pub members: Vec<Member>,
        }
    )*};
}

members_response! {
    /// etcdserverpb.MemberRemoveResponse.
    MemberRemoveResponse;
    /// etcdserverpb.MemberUpdateResponse.
    MemberUpdateResponse;
    /// etcdserverpb.MemberListResponse.
    MemberListResponse;
    /// etcdserverpb.MemberPromoteResponse.
    MemberPromoteResponse;
}
