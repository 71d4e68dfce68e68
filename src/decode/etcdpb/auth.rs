//! etcdserverpb Auth service messages and the authpb permission they grant. Several of
//! these carry secrets (passwords, tokens): see `EtcdMessage::redact`.

use serde::Serialize;

use super::json::{self, proto_enum};
use super::kv::ResponseHeader;

/// The text that replaces a secret when a message is redacted.
pub const REDACTED: &str = "<redacted>";

/// Replaces a non-empty secret string with [`REDACTED`]; an empty one stays empty, so a
/// redacted message still says whether the secret was set.
pub(crate) fn redact_string(secret: &mut String) {
    if !secret.is_empty() {
        *secret = REDACTED.to_string();
    }
}

proto_enum! {
    /// authpb.Permission.Type.
    pub enum PermissionType {
        Read = 0 => "READ",
        Write = 1 => "WRITE",
        Readwrite = 2 => "READWRITE",
    }
}

/// authpb.Permission: a key range a role may read and/or write.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    #[prost(enumeration = "PermissionType", tag = "1")]
    #[serde(
        serialize_with = "PermissionType::json",
        skip_serializing_if = "json::is_default"
    )]
    pub perm_type: i32,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub range_end: Vec<u8>,
}

/// authpb.UserAddOptions.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserAddOptions {
    #[prost(bool, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub no_password: bool,
}

empty_message! {
    /// etcdserverpb.AuthEnableRequest (no fields).
    AuthEnableRequest;
    /// etcdserverpb.AuthDisableRequest (no fields).
    AuthDisableRequest;
    /// etcdserverpb.AuthStatusRequest (no fields).
    AuthStatusRequest;
    /// etcdserverpb.AuthUserListRequest (no fields).
    AuthUserListRequest;
    /// etcdserverpb.AuthRoleListRequest (no fields).
    AuthRoleListRequest;
}

/// etcdserverpb.AuthenticateRequest: `password` is a secret.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthenticateRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub name: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub password: String,
}

/// etcdserverpb.AuthUserAddRequest: `password` and `hashedPassword` are secrets.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthUserAddRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub name: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub password: String,
    #[prost(message, optional, tag = "3")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<UserAddOptions>,
    #[prost(string, tag = "4")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub hashed_password: String,
}

/// etcdserverpb.AuthUserChangePasswordRequest: `password` and `hashedPassword` are secrets.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthUserChangePasswordRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub name: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub password: String,
    #[prost(string, tag = "3")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub hashed_password: String,
}

/// etcdserverpb.AuthUserGetRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthUserGetRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub name: String,
}

/// etcdserverpb.AuthUserDeleteRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthUserDeleteRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub name: String,
}

/// etcdserverpb.AuthUserGrantRoleRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthUserGrantRoleRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub user: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub role: String,
}

/// etcdserverpb.AuthUserRevokeRoleRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthUserRevokeRoleRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub name: String,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub role: String,
}

/// etcdserverpb.AuthRoleAddRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthRoleAddRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub name: String,
}

/// etcdserverpb.AuthRoleGetRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthRoleGetRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub role: String,
}

/// etcdserverpb.AuthRoleDeleteRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthRoleDeleteRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub role: String,
}

/// etcdserverpb.AuthRoleGrantPermissionRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthRoleGrantPermissionRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perm: Option<Permission>,
}

/// etcdserverpb.AuthRoleRevokePermissionRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthRoleRevokePermissionRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub role: String,
    #[prost(bytes = "vec", tag = "2")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub key: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    #[serde(
        serialize_with = "json::bytes",
        skip_serializing_if = "json::is_default"
    )]
    pub range_end: Vec<u8>,
}

header_only_response! {
    /// etcdserverpb.AuthEnableResponse.
    AuthEnableResponse;
    /// etcdserverpb.AuthDisableResponse.
    AuthDisableResponse;
    /// etcdserverpb.AuthUserAddResponse.
    AuthUserAddResponse;
    /// etcdserverpb.AuthUserDeleteResponse.
    AuthUserDeleteResponse;
    /// etcdserverpb.AuthUserChangePasswordResponse.
    AuthUserChangePasswordResponse;
    /// etcdserverpb.AuthUserGrantRoleResponse.
    AuthUserGrantRoleResponse;
    /// etcdserverpb.AuthUserRevokeRoleResponse.
    AuthUserRevokeRoleResponse;
    /// etcdserverpb.AuthRoleAddResponse.
    AuthRoleAddResponse;
    /// etcdserverpb.AuthRoleDeleteResponse.
    AuthRoleDeleteResponse;
    /// etcdserverpb.AuthRoleGrantPermissionResponse.
    AuthRoleGrantPermissionResponse;
    /// etcdserverpb.AuthRoleRevokePermissionResponse.
    AuthRoleRevokePermissionResponse;
}

/// etcdserverpb.AuthStatusResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthStatusResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(bool, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub enabled: bool,
    #[prost(uint64, tag = "3")]
    #[serde(
        serialize_with = "json::u64_str",
        skip_serializing_if = "json::is_default"
    )]
    pub auth_revision: u64,
}

/// etcdserverpb.AuthenticateResponse: `token` is a secret.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthenticateResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(string, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub token: String,
}

/// etcdserverpb.AuthUserGetResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthUserGetResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(string, repeated, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub roles: Vec<String>,
}

/// etcdserverpb.AuthRoleGetResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthRoleGetResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub perm: Vec<Permission>,
}

/// etcdserverpb.AuthRoleListResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthRoleListResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(string, repeated, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub roles: Vec<String>,
}

/// etcdserverpb.AuthUserListResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct AuthUserListResponse {
    #[prost(message, optional, tag = "1")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<ResponseHeader>,
    #[prost(string, repeated, tag = "2")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub users: Vec<String>,
}
