//! grpc.health.v1: the standard gRPC health service, which etcd serves on its client
//! port (load balancers and Kubernetes probes call it).

use serde::Serialize;

use super::json::{self, proto_enum};

/// grpc.health.v1.HealthCheckRequest.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    #[serde(skip_serializing_if = "json::is_default")]
    pub service: String,
}

proto_enum! {
    /// grpc.health.v1.HealthCheckResponse.ServingStatus.
    pub enum ServingStatus {
        Unknown = 0 => "UNKNOWN",
        Serving = 1 => "SERVING",
        NotServing = 2 => "NOT_SERVING",
        ServiceUnknown = 3 => "SERVICE_UNKNOWN",
    }
}

/// grpc.health.v1.HealthCheckResponse.
#[derive(Clone, PartialEq, prost::Message, Serialize)]
pub struct HealthCheckResponse {
    #[prost(enumeration = "ServingStatus", tag = "1")]
    #[serde(
        serialize_with = "ServingStatus::json",
        skip_serializing_if = "json::is_default"
    )]
    pub status: i32,
}
