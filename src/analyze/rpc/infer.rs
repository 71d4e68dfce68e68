//! Guessing the method of a call whose `:path` was never seen (a connection open before
//! recording began, or a lost header block) from its messages alone. The rule is
//! conservative: a message "fits" a type only if decoding it and encoding it again gives
//! back exactly the same bytes (prost silently skips unknown fields, so a plain decode
//! accepts far too much), and a method is named only when it is the single one whose
//! types fit every message seen.

use prost::Message;

use crate::decode::etcdpb::{self, EtcdMessage, MethodInfo, METHODS};

/// Re-encodes a decoded message (the canonical encoding etcd's Go code also produces:
/// fields in number order, defaults left out).
fn reencode(message: &EtcdMessage) -> Vec<u8> {
    macro_rules! each {
        ($($ty:ident,)*) => {
            match message {
                $(EtcdMessage::$ty(m) => m.encode_to_vec(),)*
            }
        };
    }
    each! {
    RangeRequest,
    RangeResponse,
    RangeStreamResponse,
    PutRequest,
    PutResponse,
    DeleteRangeRequest,
    DeleteRangeResponse,
    TxnRequest,
    TxnResponse,
    CompactionRequest,
    CompactionResponse,
    WatchRequest,
    WatchResponse,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    LeaseKeepAliveRequest,
    LeaseKeepAliveResponse,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    LeaseLeasesRequest,
    LeaseLeasesResponse,
    MemberAddRequest,
    MemberAddResponse,
    MemberRemoveRequest,
    MemberRemoveResponse,
    MemberUpdateRequest,
    MemberUpdateResponse,
    MemberListRequest,
    MemberListResponse,
    MemberPromoteRequest,
    MemberPromoteResponse,
    AlarmRequest,
    AlarmResponse,
    StatusRequest,
    StatusResponse,
    DefragmentRequest,
    DefragmentResponse,
    HashRequest,
    HashResponse,
    HashKVRequest,
    HashKVResponse,
    SnapshotRequest,
    SnapshotResponse,
    MoveLeaderRequest,
    MoveLeaderResponse,
    DowngradeRequest,
    DowngradeResponse,
    AuthEnableRequest,
    AuthEnableResponse,
    AuthDisableRequest,
    AuthDisableResponse,
    AuthStatusRequest,
    AuthStatusResponse,
    AuthenticateRequest,
    AuthenticateResponse,
    AuthUserAddRequest,
    AuthUserAddResponse,
    AuthUserGetRequest,
    AuthUserGetResponse,
    AuthUserListRequest,
    AuthUserListResponse,
    AuthUserDeleteRequest,
    AuthUserDeleteResponse,
    AuthUserChangePasswordRequest,
    AuthUserChangePasswordResponse,
    AuthUserGrantRoleRequest,
    AuthUserGrantRoleResponse,
    AuthUserRevokeRoleRequest,
    AuthUserRevokeRoleResponse,
    AuthRoleAddRequest,
    AuthRoleAddResponse,
    AuthRoleGetRequest,
    AuthRoleGetResponse,
    AuthRoleListRequest,
    AuthRoleListResponse,
    AuthRoleDeleteRequest,
    AuthRoleDeleteResponse,
    AuthRoleGrantPermissionRequest,
    AuthRoleGrantPermissionResponse,
    AuthRoleRevokePermissionRequest,
    AuthRoleRevokePermissionResponse,
    CampaignRequest,
    CampaignResponse,
    ProclaimRequest,
    ProclaimResponse,
    LeaderRequest,
    LeaderResponse,
    ResignRequest,
    ResignResponse,
    LockRequest,
    LockResponse,
    UnlockRequest,
    UnlockResponse,
    HealthCheckRequest,
    HealthCheckResponse,
    }
}

/// Which side of a call a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

/// True when `bytes` decode as the `side` type of the method at `path` and encode back
/// to the same bytes.
pub fn fits(path: &str, side: Side, bytes: &[u8]) -> bool {
    let decoded = match side {
        Side::Request => etcdpb::decode_request(path, bytes),
        Side::Response => etcdpb::decode_response(path, bytes),
    };
    decoded.is_ok_and(|m| reencode(&m) == bytes)
}

/// The one method whose types fit every given message, if exactly one does. Empty
/// messages fit nearly every type, so at least one non-empty message is required.
pub fn infer_method(messages: &[(Side, &[u8])]) -> Option<&'static MethodInfo> {
    infer_method_among(messages, |_| true)
}

/// [`infer_method`] among the methods `allowed` accepts (what else is known of the call:
/// e.g. that it carried several responses, so it is not unary).
pub fn infer_method_among(
    messages: &[(Side, &[u8])],
    allowed: impl Fn(&MethodInfo) -> bool,
) -> Option<&'static MethodInfo> {
    if messages.iter().all(|(_, bytes)| bytes.is_empty()) {
        return None;
    }
    let mut found: Option<&'static MethodInfo> = None;
    for method in METHODS.iter().filter(|m| allowed(m)) {
        if messages
            .iter()
            .all(|(side, bytes)| fits(method.path, *side, bytes))
        {
            if found.is_some() {
                return None;
            }
            found = Some(method);
        }
    }
    found
}

/// The longest prefix of `bytes` made of whole top-level protobuf fields: what can be
/// decoded of a message whose end was not captured without inventing the cut field.
pub fn whole_fields_prefix(bytes: &[u8]) -> &[u8] {
    let mut pos = 0usize;
    let mut good = 0usize;
    while pos < bytes.len() {
        let Some((key, n)) = read_varint(bytes.get(pos..).unwrap_or_default()) else {
            break;
        };
        pos = pos.saturating_add(n);
        let len = match key & 7 {
            0 => match read_varint(bytes.get(pos..).unwrap_or_default()) {
                Some((_, n)) => n as u64,
                None => break,
            },
            1 => 8,
            5 => 4,
            2 => match read_varint(bytes.get(pos..).unwrap_or_default()) {
                Some((l, n)) => {
                    pos = pos.saturating_add(n);
                    l
                }
                None => break,
            },
            _ => break,
        };
        let Some(end) = usize::try_from(len).ok().and_then(|l| pos.checked_add(l)) else {
            break;
        };
        if end > bytes.len() {
            break;
        }
        pos = end;
        good = pos;
    }
    bytes.get(..good).unwrap_or_default()
}

fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_request_alone_is_ambiguous_but_with_its_response_is_not() {
        let put = etcdpb::PutRequest {
            key: b"foo".to_vec(),
            value: b"bar".to_vec(),
            ..Default::default()
        }
        .encode_to_vec();
        // Range and DeleteRange requests have the same shape.
        assert!(infer_method(&[(Side::Request, &put)]).is_none());
        let kv = etcdpb::KeyValue {
            key: b"foo".to_vec(),
            value: b"bar".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            ..Default::default()
        };
        let range_resp = etcdpb::RangeResponse {
            header: Some(etcdpb::ResponseHeader {
                cluster_id: 1,
                member_id: 2,
                revision: 3,
                raft_term: 4,
            }),
            kvs: vec![kv],
            count: 1,
            ..Default::default()
        }
        .encode_to_vec();
        let m = infer_method(&[(Side::Request, &put), (Side::Response, &range_resp)]).unwrap();
        assert_eq!(m.path, "/etcdserverpb.KV/Range");
        assert!(infer_method(&[]).is_none());
        assert!(infer_method(&[(Side::Request, &[])]).is_none());
    }

    #[test]
    fn prefix_keeps_only_whole_fields() {
        let put = etcdpb::PutRequest {
            key: b"foo".to_vec(),
            value: vec![7; 300],
            ..Default::default()
        }
        .encode_to_vec();
        assert_eq!(whole_fields_prefix(&put), &put[..]);
        assert_eq!(whole_fields_prefix(&put[..100]), &put[..5]);
        assert_eq!(whole_fields_prefix(&[0xff]), &[] as &[u8]);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = crate::test_rng::XorShift(0x9e3779b97f4a7c15);
        for _ in 0..2000 {
            let len = rng.index(40);
            let bytes = rng.bytes(len);
            let _ = whole_fields_prefix(&bytes);
            let _ = infer_method(&[(Side::Request, &bytes)]);
        }
    }
}
