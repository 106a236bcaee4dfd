//! The HTTP client: hyper's pooled HTTP/1.1 client, with nothing on top. The
//! generator shares the machine with the server, so every cycle the client spends
//! is one the server does not get; reqwest's extra layers (redirects, decoding)
//! would be spent on every request for nothing here.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// How long one request may take before it counts as a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request got no answer. An answer with an error status is not a
/// `CallError`: the caller decides what a status means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("timeout")]
    Timeout,
    #[error("connect")]
    Connect,
    #[error("transport")]
    Transport,
    #[error("bad request uri")]
    Uri,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

/// One client per client thread: its connections belong to that thread's runtime.
#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    /// Must be called inside a Tokio runtime. `base` is `http://host:port`.
    pub fn new(base: &str) -> Http {
        let mut connector = HttpConnector::new();
        // Small requests and answers: Nagle's algorithm would only add delay.
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(usize::MAX)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Http {
            client,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    pub async fn get(&self, path: &str) -> Result<Reply, CallError> {
        self.send(Method::GET, path, &[], Bytes::new()).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        headers: &[(&'static str, &str)],
        body: String,
    ) -> Result<Reply, CallError> {
        let mut all = Vec::with_capacity(headers.len() + 1);
        all.push(("content-type", "application/json"));
        all.extend_from_slice(headers);
        self.send(Method::POST, path, &all, Bytes::from(body)).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&'static str, &str)],
        body: Bytes,
    ) -> Result<Reply, CallError> {
        let uri: Uri = format!("{}{}", self.base, path)
            .parse()
            .map_err(|_| CallError::Uri)?;
        let mut request = Request::builder().method(method).uri(uri);
        for &(name, value) in headers {
            request = request.header(name, value);
        }
        let request = request.body(Full::new(body)).map_err(|_| CallError::Uri)?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                if error.is_connect() {
                    CallError::Connect
                } else {
                    CallError::Transport
                }
            })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|_| CallError::Transport)?
                .to_bytes();
            Ok(Reply { status, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| CallError::Timeout)?
    }
}
