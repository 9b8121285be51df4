//! The HTTP side: hyper's HTTP/1.1 server, optionally behind rustls, with the bounds that keep
//! a client from exhausting the process (connections, header time, body size). Each request
//! is answered by [`Api::handle`] on a blocking thread, since the file store takes a file lock
//! and fsyncs.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{CONTENT_LENGTH, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        ServerConfig,
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    },
};

use super::{Answer, Api, error::ApiError, sigv4::SignedRequest, xml};

/// The largest request body: an Authorize with hundreds of permissions is tens of kilobytes.
pub const MAX_BODY: usize = 256 * 1024;
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 64;
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("listening on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "{address} is not a loopback address: serving the API anywhere else needs --tls-cert and --tls-key"
    )]
    NeedsTls { address: SocketAddr },
    #[error("reading {}: {problem}", path.display())]
    Tls { path: PathBuf, problem: String },
}

/// The certificate chain and key files for TLS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn tls_acceptor(files: &TlsFiles) -> Result<TlsAcceptor, ServerError> {
    let problem = |path: &Path, problem: String| ServerError::Tls {
        path: path.to_path_buf(),
        problem,
    };
    let certs = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|error| problem(&files.cert, error.to_string()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|error| problem(&files.key, error.to_string()))?;
    let config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
    .map_err(|error| problem(&files.cert, error.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// A bound listener, ready to serve.
pub struct Server {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl Server {
    /// Binds `address`: loopback, or anything with TLS.
    pub async fn bind(address: SocketAddr, tls: Option<&TlsFiles>) -> Result<Self, ServerError> {
        if tls.is_none() && !address.ip().is_loopback() {
            return Err(ServerError::NeedsTls { address });
        }
        let tls = tls.map(tls_acceptor).transpose()?;
        let listener = TcpListener::bind(address)
            .await
            .map_err(|source| ServerError::Listen { address, source })?;
        Ok(Self { listener, tls })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until the task is dropped.
    pub async fn serve(self, api: Arc<Api>) {
        let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        loop {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accepting an API connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let api = api.clone();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let service = service_fn(move |request| answer(api.clone(), request));
                let mut builder = http1::Builder::new();
                builder
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT);
                let result = match tls {
                    Some(tls) => match tls.accept(stream).await {
                        Ok(stream) => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                        Err(error) => {
                            tracing::debug!(%peer, %error, "TLS handshake failed");
                            return;
                        }
                    },
                    None => {
                        builder
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                };
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "API connection ended");
                }
            });
        }
    }
}

fn respond(answer: Answer) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = answer.status;
    if let Ok(value) = "text/xml;charset=UTF-8".parse() {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
}

fn refuse(error: &ApiError) -> Response<Full<Bytes>> {
    respond(Answer {
        status: error.status,
        body: xml::ec2_error(error, "00000000-0000-0000-0000-000000000000"),
    })
}

async fn answer(
    api: Arc<Api>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let too_large = ApiError::request_too_large(MAX_BODY);
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<usize>().ok());
    if declared.is_some_and(|length| length > MAX_BODY) {
        return Ok(refuse(&too_large));
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return Ok(refuse(&too_large)),
    };
    let answer = tokio::task::spawn_blocking(move || {
        let headers: Vec<(&str, &str)> = parts
            .headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)))
            .collect();
        let request = SignedRequest {
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query: parts.uri.query().unwrap_or(""),
            headers,
            body: &body,
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs() as i64);
        api.handle(&request, now)
    })
    .await
    .unwrap_or_else(|_| Answer {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        body: xml::ec2_error(
            &ApiError::internal("the request handler failed"),
            "00000000-0000-0000-0000-000000000000",
        ),
    });
    Ok(respond(answer))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;
    use crate::api::{credentials::Credentials, store::file::FileStore};

    #[tokio::test]
    async fn non_loopback_needs_tls_and_oversized_or_unsigned_requests_are_refused() {
        let refused = Server::bind("0.0.0.0:0".parse().expect("addr"), None).await;
        assert!(matches!(refused, Err(ServerError::NeedsTls { .. })));

        let dir = std::env::temp_dir().join(format!("sgwall-api-server-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let config = dir.join("c.toml");
        let text = "[[security_group]]\nname = \"a\"\n";
        std::fs::write(&config, text).expect("config");
        let credentials = Credentials::parse(
            "[default]\naws_access_key_id=K\naws_secret_access_key=S\n",
            Path::new("c"),
        )
        .expect("credentials");
        let api = Arc::new(Api::new(
            Box::new(FileStore::open(&config).expect("store")),
            credentials,
        ));
        let server = Server::bind("127.0.0.1:0".parse().expect("addr"), None)
            .await
            .expect("bind");
        let address = server.local_addr().expect("address");
        let serving = tokio::spawn(server.serve(api));
        let exchange = |request: Vec<u8>| async move {
            let mut stream = tokio::net::TcpStream::connect(address)
                .await
                .expect("connect");
            stream.write_all(&request).await.expect("write");
            let mut answer = vec![0u8; 4096];
            let n = stream.read(&mut answer).await.expect("read");
            String::from_utf8_lossy(&answer[..n]).into_owned()
        };
        let big = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        let answer = exchange(big.into_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(
            answer.contains("<Code>RequestEntityTooLarge</Code>"),
            "{answer}"
        );
        let body = "Action=CreateSecurityGroup&GroupName=b&GroupDescription=d";
        let unsigned = format!(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let answer = exchange(unsigned.into_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
        assert!(answer.contains("<Code>AuthFailure</Code>"), "{answer}");
        assert_eq!(std::fs::read_to_string(&config).expect("config"), text);
        serving.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
