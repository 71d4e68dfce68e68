//! Hostile clients on a recorded etcd's client port: random bytes and broken HTTP/2 on
//! 150 connections, between ordinary puts. `replay` still decodes every put fully, does
//! not crash, and shows each hostile connection as what it is (a record with no method
//! and a note saying why it could not be read), never as a call it did not make.

mod common;

#[cfg(feature = "record")]
mod hostile {
    use std::collections::HashSet;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use etcd_trace::decode::http2::frame::{FLAG_END_HEADERS, FLAG_END_STREAM};
    use etcd_trace::decode::http2::{FrameHeader, FrameType};

    use super::common::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    const HOSTILE: usize = 150;
    const PUTS: usize = 15;

    /// xorshift64: the same hostile bytes on every run.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    fn frame_header(len: u32, kind: FrameType, flags: u8, stream_id: u32) -> [u8; 9] {
        FrameHeader {
            len,
            kind,
            flags,
            stream_id,
            reserved_bit: false,
        }
        .to_bytes()
    }

    /// The kinds of hostile connection, each HOSTILE / 5 times.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Hostile {
        /// Random bytes from the first one.
        RandomBytes,
        /// The preface with a wrong byte, then random bytes.
        BadPreface,
        /// The preface and SETTINGS, then a frame 16 MiB long by its header.
        BadFrameLength,
        /// The preface and SETTINGS, then HEADERS whose block is not HPACK.
        GarbageHpack,
        /// The preface and SETTINGS, then HEADERS cut short by the close.
        TruncatedFrame,
    }

    const KINDS: [Hostile; 5] = [
        Hostile::RandomBytes,
        Hostile::BadPreface,
        Hostile::BadFrameLength,
        Hostile::GarbageHpack,
        Hostile::TruncatedFrame,
    ];

    fn hostile_bytes(kind: Hostile, rng: &mut Rng) -> Vec<u8> {
        let mut out = Vec::new();
        let noise = 1 + (rng.next() % 1500) as usize;
        match kind {
            Hostile::RandomBytes => return rng.bytes(noise),
            Hostile::BadPreface => {
                out.extend(PREFACE);
                let at = (rng.next() % PREFACE.len() as u64) as usize;
                out[at] ^= 0x20;
                out.extend(rng.bytes(noise));
                return out;
            }
            _ => {}
        }
        out.extend(PREFACE);
        out.extend(frame_header(0, FrameType::Settings, 0, 0));
        match kind {
            Hostile::BadFrameLength => {
                let kind = [FrameType::Data, FrameType::Headers, FrameType::Settings]
                    [(rng.next() % 3) as usize];
                out.extend(frame_header(0xFF_FFFF, kind, 0, 1));
                out.extend(rng.bytes(noise));
            }
            Hostile::GarbageHpack => {
                // An indexed field of index 0, which no HPACK block may hold, then noise.
                let mut block = vec![0x80];
                block.extend(rng.bytes(noise.min(200)));
                out.extend(frame_header(
                    block.len() as u32,
                    FrameType::Headers,
                    FLAG_END_HEADERS | FLAG_END_STREAM,
                    1,
                ));
                out.extend(block);
            }
            _ => {
                out.extend(frame_header(
                    100 + noise as u32,
                    FrameType::Headers,
                    FLAG_END_HEADERS,
                    1,
                ));
                out.extend(rng.bytes(noise / 2));
            }
        }
        out
    }

    /// Opens the hostile connections to `server` one after the other, from a thread in
    /// the rig's network namespace; the client address and kind of each.
    fn attack(netns: &str, server: SocketAddr) -> Vec<(SocketAddr, Hostile)> {
        let ns = std::fs::File::open(format!("/run/netns/{netns}")).unwrap();
        std::thread::spawn(move || {
            // SAFETY: setns on this thread only, with a valid namespace fd.
            let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let mut rng = Rng(0x5EED_0FBA_DB17_E500);
            let mut sent = Vec::new();
            for i in 0..HOSTILE {
                let kind = KINDS[i % KINDS.len()];
                let mut conn = TcpStream::connect(server).unwrap();
                conn.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                sent.push((conn.local_addr().unwrap(), kind));
                // etcd may close first: what it refuses is its business.
                let _ = conn.write_all(&hostile_bytes(kind, &mut rng));
                let _ = conn.shutdown(std::net::Shutdown::Write);
                let mut sink = [0u8; 4096];
                while matches!(conn.read(&mut sink), Ok(n) if n > 0) {}
                std::thread::sleep(Duration::from_millis(5));
            }
            sent
        })
        .join()
        .unwrap()
    }

    fn base64(text: &str) -> String {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn hostile_clients_are_not_taken_for_calls() {
        if skip_without_root() {
            return;
        }
        let rig = Rig::start("hostile");
        let rec = rig.record(&[]);
        let server: SocketAddr = rig.etcd.endpoint.parse().unwrap();
        let netns = rig.netns.name.clone();
        let attacker = std::thread::spawn(move || attack(&netns, server));
        for i in 0..PUTS {
            rig.etcdctl(&["put", &format!("ok/{i}"), &format!("value-{i}")]);
            std::thread::sleep(Duration::from_millis(40));
        }
        let hostile = attacker.join().unwrap();
        rig.etcdctl(&["put", "ok/last", "after the attack"]);
        stop_cleanly(rec);

        let capture = rig.capture.to_str().unwrap();
        let text = etcd_trace(&["replay", capture]);
        assert!(text.status.success(), "{}", stderr(&text));
        let records = replay_json(&rig.capture, &[]);
        let by_client: std::collections::HashMap<SocketAddr, Hostile> =
            hostile.iter().copied().collect();

        let mut puts = HashSet::new();
        let mut noted: HashSet<SocketAddr> = HashSet::new();
        for r in &records {
            let client: SocketAddr = r["client"].as_str().unwrap().parse().unwrap();
            match by_client.get(&client) {
                None => {
                    // etcdctl's: every put decoded fully.
                    assert_eq!(r["method"], "/etcdserverpb.KV/Put", "{r}");
                    assert_eq!(r["status"], 0, "{r}");
                    assert_eq!(r["gaps"], false, "{r}");
                    assert_eq!(r["inferred"], false, "{r}");
                    assert_eq!(r["notes"].as_array().unwrap().len(), 0, "{r}");
                    let value = r["request"]["value"].as_str().unwrap_or_default();
                    let key = r["key"].as_str().unwrap_or_default();
                    let expected = match key.strip_prefix("ok/") {
                        Some("last") => "after the attack".to_string(),
                        Some(i) => format!("value-{i}"),
                        None => panic!("a put of an unknown key: {r}"),
                    };
                    assert_eq!(base64(value), expected, "{r}");
                    assert!(r["response"]["header"]["revision"].is_string(), "{r}");
                    assert!(puts.insert(r["key"].as_str().unwrap().to_string()), "{r}");
                }
                Some(kind) => {
                    // A hostile connection: no method, no decoded message, and a note.
                    assert!(r["method"].is_null(), "{kind:?} taken for a call: {r}");
                    assert!(r["request"].is_null(), "{kind:?}: {r}");
                    assert!(r["response"].is_null(), "{kind:?}: {r}");
                    assert!(!r["notes"].as_array().unwrap().is_empty(), "{kind:?}: {r}");
                    noted.insert(client);
                }
            }
        }
        let mut expected: HashSet<String> = (0..PUTS).map(|i| format!("ok/{i}")).collect();
        expected.insert("ok/last".into());
        assert_eq!(puts, expected);
        // Every hostile connection shows, as a record that says why it was not read.
        for (client, kind) in &hostile {
            assert!(
                noted.contains(client),
                "{kind:?} from {client} left no record"
            );
        }
        let out = stdout(&text);
        let connections: usize = out
            .lines()
            .find_map(|l| l.split_once(" connections (").map(|(n, _)| n.parse().ok()))
            .flatten()
            .unwrap_or_else(|| panic!("no count of connections: {out}"));
        assert!(connections > HOSTILE + PUTS, "{out}");

        // detect names the attacker: connections that carried nothing readable.
        let out = etcd_trace(&["detect", capture, "--format", "json"]);
        let findings: Vec<serde_json::Value> = stdout(&out)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let garbage = findings
            .iter()
            .find(|f| f["rule"] == "client-garbage")
            .unwrap_or_else(|| panic!("no client-garbage finding: {findings:#?}"));
        assert_eq!(
            garbage["client"],
            hostile[0].0.ip().to_string(),
            "{garbage}"
        );
        assert!(garbage["events"].as_u64().unwrap() >= 5, "{garbage}");
    }
}
