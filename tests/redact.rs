//! Record-time redaction against a real etcd with auth on: a default recording holds
//! neither the password nor any token the server issued, and still decodes every call;
//! a `--keep-secrets` recording of the same calls holds them (so the test can fail).
#![cfg(feature = "record")]

mod common;

use common::*;
use etcd_trace::capture::Event;
use serde_json::Value;

const PASSWORD: &str = "Redact-Me-9731";

/// Every packet payload of a capture, concatenated.
fn payload_bytes(capture: &std::path::Path) -> Vec<u8> {
    let (_, events) = read_events(capture);
    let mut all = Vec::new();
    for ev in events {
        if let Event::Packet(p) = ev {
            all.extend_from_slice(&p.payload);
        }
    }
    all
}

/// etcd's simple token: 16 letters, a dot, the raft index.
fn is_simple_token(text: &str) -> bool {
    let Some((prefix, index)) = text.split_once('.') else {
        return false;
    };
    prefix.len() == 16
        && prefix.bytes().all(|b| b.is_ascii_alphabetic())
        && !index.is_empty()
        && index.bytes().all(|b| b.is_ascii_digit())
}

/// Raw simple tokens anywhere in the bytes.
fn raw_tokens(bytes: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for (i, w) in bytes.windows(18).enumerate() {
        if w[..16].iter().all(u8::is_ascii_alphabetic) && w[16] == b'.' && w[17].is_ascii_digit() {
            let end = bytes[i + 17..]
                .iter()
                .position(|b| !b.is_ascii_digit())
                .map_or(bytes.len(), |n| i + 17 + n);
            found.push(String::from_utf8_lossy(&bytes[i..end]).into_owned());
        }
    }
    found
}

#[test]
fn default_recordings_hold_no_password_or_token() {
    if skip_without_root() {
        return;
    }
    let rig = Rig::start("redact");
    let (log, kept) = record_auth_calls(&rig, &format!("root:{PASSWORD}"));
    assert!(
        log.contains("redacted"),
        "the summary says what was redacted: {log}"
    );

    // What a token looks like, learned from the unredacted capture.
    let kept_records = replay_json(&kept, &["--show-secrets"]);
    let issued: Vec<String> = of(&kept_records, "/etcdserverpb.Auth/Authenticate")
        .iter()
        .filter_map(|r| r["response"]["token"].as_str().map(str::to_string))
        .collect();
    assert!(!issued.is_empty(), "{kept_records:?}");
    assert!(issued.iter().all(|t| is_simple_token(t)), "{issued:?}");
    let kept_bytes = payload_bytes(&kept);
    assert!(contains(&kept_bytes, PASSWORD.as_bytes()));
    assert!(!raw_tokens(&kept_bytes).is_empty());
    let (reader, _) = read_events(&kept);
    assert!(!reader.header().config.redact_secrets);
    assert_eq!(reader.index().redaction, None);

    // What redaction did is kept in the capture, for whoever opens it later.
    let info = etcd_trace(&["info", rig.capture.to_str().unwrap(), "--format", "json"]);
    let info: Value = serde_json::from_str(&stdout(&info)).unwrap();
    let redaction = &info["redaction"];
    assert!(
        redaction["fields_redacted"].as_u64().unwrap() >= 3,
        "{info}"
    );
    assert!(
        redaction["header_values_redacted"].as_u64().unwrap() >= 1,
        "{info}"
    );
    assert_eq!(redaction["unscrubbed_packets"], 0, "{info}");
    let text = stdout(&etcd_trace(&["info", rig.capture.to_str().unwrap()]));
    assert!(text.contains("redaction    redacted "), "{text}");
    let text = stdout(&etcd_trace(&["info", kept.to_str().unwrap()]));
    assert!(text.contains("redaction    off"), "{text}");

    // The redacted capture: no password, no token, in raw bytes or decoded.
    let (reader, _) = read_events(&rig.capture);
    assert!(reader.header().config.redact_secrets);
    let bytes = payload_bytes(&rig.capture);
    assert!(
        !contains(&bytes, PASSWORD.as_bytes()),
        "the password leaked"
    );
    assert_eq!(raw_tokens(&bytes), Vec::<String>::new(), "a token leaked");
    let records = replay_json(&rig.capture, &["--show-secrets"]);
    let text = assert_auth_redacted(&records, PASSWORD);
    let with_token: Vec<&Value> = records.iter().filter(|r| !r["token"].is_null()).collect();
    assert!(!with_token.is_empty(), "calls with a token header: {text}");
    for r in &with_token {
        let token = r["token"].as_str().unwrap();
        assert!(!is_simple_token(token), "{r}");
        assert!(token.bytes().all(|b| b"0-:*".contains(&b)), "{r}");
    }
    // HPACK stayed in step: the calls after the Authenticates decode whole.
    let put = of(&records, "/etcdserverpb.KV/Put");
    assert_eq!(put.len(), 1, "{text}");
    assert_eq!(put[0]["key"], "k1", "{text}");
    assert_eq!(put[0]["status"], 0, "{text}");
    let range = of(&records, "/etcdserverpb.KV/Range");
    assert!(
        range.iter().any(|r| r["key"] == "k1" && r["status"] == 0),
        "{text}"
    );
}
