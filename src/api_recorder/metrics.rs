//! /metrics, fetched and read: etcd serves Prometheus text on its client URL. The
//! request is HTTP/1.0, so the reply has no chunked encoding and ends when the
//! connection closes; its samples of the families the analyses use are kept.

#![forbid(unsafe_code)]

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::capture::api::{cut_text, metric_kept, Metric, MetricsSample, MAX_METRIC_SAMPLES};
use crate::reproduce::client::Target;

/// Largest /metrics reply read (etcd's is a few hundred KiB).
const MAX_REPLY: usize = 16 << 20;
const TIMEOUT: Duration = Duration::from_secs(5);

/// GET /metrics from `endpoint` (`HOST:PORT`), over TLS when the target uses it.
pub async fn fetch(target: &Target, endpoint: &str) -> Result<MetricsSample> {
    let body = tokio::time::timeout(TIMEOUT, get(target, endpoint))
        .await
        .map_err(|_| anyhow::anyhow!("GET /metrics from {endpoint}: timed out"))??;
    Ok(parse(&String::from_utf8_lossy(&body)))
}

async fn get(target: &Target, endpoint: &str) -> Result<Vec<u8>> {
    let tcp = TcpStream::connect(endpoint)
        .await
        .with_context(|| format!("connecting to {endpoint}"))?;
    match &target.tls {
        None => exchange(tcp, endpoint).await,
        Some(config) => {
            let mut config = (**config).clone();
            // The gRPC connections ask for h2; this one speaks HTTP/1.
            config.alpn_protocols.clear();
            let host = endpoint
                .rsplit_once(':')
                .map_or(endpoint, |(h, _)| h)
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = rustls_pki_types::ServerName::try_from(host.to_string())
                .with_context(|| format!("{host} as a TLS server name"))?;
            let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS handshake with {endpoint}"))?;
            exchange(tls, endpoint).await
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, endpoint: &str) -> Result<Vec<u8>> {
    let request =
        format!("GET /metrics HTTP/1.0\r\nHost: {endpoint}\r\nAccept: text/plain\r\n\r\n");
    s.write_all(request.as_bytes()).await?;
    let mut reply = Vec::new();
    let mut limited = (&mut s).take(MAX_REPLY as u64 + 1);
    // A TLS peer that closes without close_notify still gave its whole reply.
    if let Err(e) = limited.read_to_end(&mut reply).await {
        if reply.is_empty() {
            return Err(e).context("reading /metrics");
        }
    }
    if reply.len() > MAX_REPLY {
        bail!("/metrics from {endpoint} is longer than {MAX_REPLY} bytes");
    }
    let Some(at) = reply.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("/metrics from {endpoint}: no HTTP reply");
    };
    let head = String::from_utf8_lossy(&reply[..at]);
    let status = head.split_whitespace().nth(1).unwrap_or("");
    if status != "200" {
        bail!(
            "/metrics from {endpoint}: HTTP {}",
            head.lines().next().unwrap_or("")
        );
    }
    Ok(reply.split_off(at + 4))
}

/// The kept samples of a Prometheus text exposition; lines that do not parse are
/// counted as left out, not guessed at.
pub fn parse(text: &str) -> MetricsSample {
    let mut out = MetricsSample::default();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line
            .find(|c: char| c == '{' || c.is_whitespace())
            .unwrap_or(line.len());
        let name = &line[..name_end];
        if !metric_kept(name) || out.samples.len() >= MAX_METRIC_SAMPLES {
            out.left_out = out.left_out.saturating_add(1);
            continue;
        }
        match sample(name, &line[name_end..]) {
            Some(m) => out.samples.push(m),
            None => out.left_out = out.left_out.saturating_add(1),
        }
    }
    out
}

/// `{a="x",b="y"} 1.5 [timestamp]` after the name.
fn sample(name: &str, rest: &str) -> Option<Metric> {
    let mut labels = Vec::new();
    let mut rest = rest;
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = labels_of(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().ok()?,
    };
    Some(Metric {
        name: cut_text(name),
        labels,
        value_bits: value.to_bits(),
    })
}

/// The labels up to the closing `}`, and what follows it.
fn labels_of(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        s = &s[end + 1..];
        if labels.len() < 32 {
            labels.push((cut_text(key), cut_text(&value)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_etcds_families_and_reads_labels() {
        let text = "# HELP etcd_disk_wal_fsync_duration_seconds x\n\
# TYPE etcd_disk_wal_fsync_duration_seconds histogram\n\
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 12\n\
etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 20\n\
etcd_disk_wal_fsync_duration_seconds_sum 0.5\n\
go_goroutines 80\n\
grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Put\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 31\n\
etcd_server_has_leader 1\n\
etcd_server_weird{a=\"q\\\"x\"} NaN\n\
etcd_server_broken{a=\"x} 1\n";
        let m = parse(text);
        assert_eq!(m.samples.len(), 6, "{m:#?}");
        assert_eq!(m.left_out, 2, "go_goroutines and the broken line");
        let put = &m.samples[3];
        assert_eq!(put.label("grpc_method"), Some("Put"));
        assert_eq!(put.value(), 31.0);
        assert_eq!(m.samples[1].label("le"), Some("+Inf"));
        assert_eq!(m.samples[5].label("a"), Some("q\"x"));
        assert!(m.samples[5].value().is_nan());
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = crate::test_rng::XorShift(9);
        for _ in 0..2000 {
            let bytes = rng.bytes(200);
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse(&format!("etcd_server_x{text}"));
            let _ = parse(&format!("etcd_server_x{{a=\"{text}"));
        }
    }
}
