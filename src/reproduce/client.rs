//! A minimal gRPC client over HTTP/2 (h2), plaintext or TLS (rustls): enough to send
//! etcd's calls with bodies we encode ourselves, and read back status and messages.
//! One [`Connection`] is one HTTP/2 connection, so a captured connection's calls share
//! one as they did.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use tokio::net::TcpStream;

/// Longest response message accepted from the target.
const MAX_MESSAGE: usize = 256 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    /// `HOST:PORT` of each endpoint.
    pub endpoints: Vec<String>,
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// `http://HOST:PORT`, `https://HOST:PORT` or `HOST:PORT`: the address, and whether the
/// URL asked for TLS.
pub fn parse_endpoint(url: &str) -> Result<(String, bool)> {
    let (rest, tls) = if let Some(r) = url.strip_prefix("https://") {
        (r, true)
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, false)
    } else {
        (url, false)
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || !rest.contains(':') || rest.contains('/') {
        bail!("endpoint {url:?}: expected http://HOST:PORT or https://HOST:PORT");
    }
    Ok((rest.to_string(), tls))
}

/// The TLS client setup of `--cacert/--cert/--key`.
pub fn tls_config(
    cacert: Option<&std::path::Path>,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    let Some(cacert) = cacert else {
        bail!("a TLS endpoint needs --cacert FILE: the CA that signed the target's certificate");
    };
    for cert in CertificateDer::pem_file_iter(cacert)
        .with_context(|| format!("reading --cacert {}", cacert.display()))?
    {
        roots
            .add(cert.with_context(|| format!("--cacert {}", cacert.display()))?)
            .with_context(|| format!("--cacert {}", cacert.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("reading --cert {}", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("--cert {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("reading --key {}", key.display()))?;
            builder.with_client_auth_cert(chain, key)?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("--cert and --key go together"),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// One HTTP/2 connection to the target.
#[derive(Clone)]
pub struct Connection {
    send: SendRequest<Bytes>,
    base: String,
}

impl Connection {
    /// Connects to endpoint `i` (round robin over the endpoints).
    pub async fn open(target: &Target, i: usize) -> Result<Connection> {
        let Some(endpoint) = target.endpoints.get(i % target.endpoints.len().max(1)) else {
            bail!("no endpoint given (--endpoints URL)");
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(endpoint))
            .await
            .map_err(|_| anyhow!("connecting to {endpoint}: timed out"))?
            .with_context(|| format!("connecting to {endpoint}"))?;
        tcp.set_nodelay(true)?;
        let mut builder = h2::client::Builder::new();
        builder
            .initial_window_size(4 << 20)
            .initial_connection_window_size(16 << 20);
        let (send, scheme) = match &target.tls {
            Some(config) => {
                let host = endpoint
                    .rsplit_once(':')
                    .map_or(endpoint.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls_pki_types::ServerName::try_from(host.to_string())
                    .with_context(|| format!("{host} as a TLS server name"))?;
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("TLS handshake with {endpoint}"))?;
                let (send, conn) = builder.handshake(tls).await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                (send, "https")
            }
            None => {
                let (send, conn) = builder
                    .handshake(tcp)
                    .await
                    .with_context(|| format!("HTTP/2 handshake with {endpoint}"))?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                (send, "http")
            }
        };
        Ok(Connection {
            send,
            base: format!("{scheme}://{endpoint}"),
        })
    }

    /// Starts a call: the stream to send request messages on, and the response.
    pub async fn start(
        &self,
        path: &str,
        token: Option<&str>,
    ) -> Result<(SendStream<Bytes>, Call)> {
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(token) = token {
            request = request.header("token", token);
        }
        let request = request.body(())?;
        let mut send = self.send.clone().ready().await?;
        let (response, stream) = send.send_request(request, false)?;
        Ok((stream, Call { response }))
    }

    /// A unary call: one message out, one back.
    pub async fn unary(&self, path: &str, body: &[u8], token: Option<&str>) -> Result<Reply> {
        let (mut stream, call) = self.start(path, token).await?;
        stream.send_data(frame(body), true)?;
        let mut reader = call.responses().await?;
        let mut first = None;
        while let Some(m) = reader.next().await? {
            first.get_or_insert(m);
        }
        Ok(Reply {
            status: reader.status(),
            message: reader.message.clone(),
            body: first,
        })
    }
}

/// A unary call's outcome.
pub struct Reply {
    pub status: u32,
    pub message: String,
    pub body: Option<Bytes>,
}

/// The length-prefixed gRPC message (uncompressed).
pub fn frame(body: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.extend_from_slice(&[0]);
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(body);
    out.freeze()
}

/// A call whose response has not come yet.
pub struct Call {
    response: h2::client::ResponseFuture,
}

impl Call {
    /// Waits for the response headers.
    pub async fn responses(self) -> Result<Responses> {
        let response = self.response.await?;
        let (parts, body) = response.into_parts();
        let mut r = Responses {
            body,
            buf: BytesMut::new(),
            status: None,
            message: String::new(),
            ended: false,
        };
        if parts.status != http::StatusCode::OK {
            bail!("HTTP status {} from the target", parts.status);
        }
        // A trailers-only response carries grpc-status in its headers.
        r.take_status(&parts.headers);
        Ok(r)
    }
}

/// The messages of a response, then its status.
pub struct Responses {
    body: RecvStream,
    buf: BytesMut,
    status: Option<u32>,
    pub message: String,
    ended: bool,
}

impl Responses {
    fn take_status(&mut self, headers: &http::HeaderMap) {
        if let Some(s) = headers.get("grpc-status") {
            self.status = s.to_str().ok().and_then(|s| s.parse().ok());
        }
        if let Some(m) = headers.get("grpc-message") {
            self.message = String::from_utf8_lossy(m.as_bytes()).into_owned();
        }
    }

    /// The grpc-status (2, UNKNOWN, when the trailers never said).
    pub fn status(&self) -> u32 {
        self.status.unwrap_or(2)
    }

    /// The next message, or None at the end of the response.
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.buf.len() >= 5 {
                let len = u32::from_be_bytes([self.buf[1], self.buf[2], self.buf[3], self.buf[4]]);
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > MAX_MESSAGE {
                    bail!("the target sent a message of {len} bytes (the limit is {MAX_MESSAGE})");
                }
                if self.buf[0] != 0 {
                    bail!("the target sent a compressed message (none was asked for)");
                }
                if self.buf.len() >= 5 + len {
                    self.buf.advance(5);
                    return Ok(Some(self.buf.split_to(len).freeze()));
                }
            }
            if self.ended {
                if !self.buf.is_empty() {
                    bail!("the response ended inside a message");
                }
                return Ok(None);
            }
            match self.body.data().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    let _ = self.body.flow_control().release_capacity(chunk.len());
                    self.buf.extend_from_slice(&chunk);
                }
                None => {
                    self.ended = true;
                    if let Some(trailers) = self.body.trailers().await? {
                        self.take_status(&trailers);
                    }
                }
            }
        }
    }
}
