//! The request id: one per HTTP request, on every log line written while the app
//! handles it and on the answer (`X-Request-Id`), so that a line in the gateway's
//! access log leads to the app's lines for the same request. The gateway
//! (`gateway.conf`) makes the id and sends it; the app keeps it when it is a plain
//! token of reasonable length, and otherwise (no gateway, or a value a client made
//! up that could garble the log) makes its own.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, HttpMessage};
use tracing::Instrument;
use uuid::Uuid;

pub(super) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Room for nginx's 32 hex digits, a UUID, or another proxy's format.
const MAX_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RequestId(String);

impl RequestId {
    /// An id as given in a header: 1 to 64 ASCII letters, digits, `-`, `_` or `.`.
    pub(super) fn parse(raw: &[u8]) -> Option<RequestId> {
        let plain = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.');
        if raw.is_empty() || raw.len() > MAX_LEN || !raw.iter().all(plain) {
            return None;
        }
        String::from_utf8(raw.to_vec()).ok().map(RequestId)
    }

    pub(super) fn generate() -> RequestId {
        RequestId(Uuid::new_v4().to_string())
    }

    pub(super) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The request's id, for work that outlives the request (an order's saga).
pub(super) fn of(req: &actix_web::HttpRequest) -> Option<String> {
    req.extensions().get::<RequestId>().map(|id| id.0.clone())
}

/// Runs the request inside a `request` span carrying its id, and answers the id.
/// Installed outermost, so that every other middleware's lines carry it too.
pub(super) async fn request_id(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = req
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|value| RequestId::parse(value.as_bytes()))
        .unwrap_or_else(RequestId::generate);
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %req.method(),
        path = %req.path(),
    );
    req.extensions_mut().insert(id.clone());
    let started = Instant::now();
    let mut response = next.call(req).instrument(span.clone()).await?;
    span.in_scope(|| {
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "answered"
        );
    });
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use crate::telemetry::tests::Captured;

    use actix_web::middleware::from_fn;
    use actix_web::test::{TestRequest, call_service, init_service};
    use actix_web::{App, HttpResponse, web};

    use super::*;

    #[test]
    fn only_plain_tokens_of_reasonable_length_are_kept() {
        let longest = "a".repeat(MAX_LEN);
        for kept in ["a", "0f3c9e", "req-1_2.3", longest.as_str()] {
            assert_eq!(
                RequestId::parse(kept.as_bytes()).map(|id| id.to_string()),
                Some(kept.to_owned()),
                "{kept:?}"
            );
        }
        let too_long = "a".repeat(MAX_LEN + 1);
        for refused in [
            "",
            too_long.as_str(),
            "two words",
            "line\nbreak",
            "quote\"",
            "key=value",
            "caf\u{e9}",
        ] {
            assert_eq!(RequestId::parse(refused.as_bytes()), None, "{refused:?}");
        }
    }

    #[actix_web::test]
    async fn every_log_line_of_a_request_carries_its_id() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        // The test runtime runs the app on this thread, so a thread-local
        // subscriber sees all of it.
        let _subscriber = tracing::subscriber::set_default(subscriber);
        let app = init_service(App::new().wrap(from_fn(request_id)).route(
            "/",
            web::get().to(|| async {
                tracing::warn!("inside the handler");
                HttpResponse::Ok().finish()
            }),
        ))
        .await;

        let request = TestRequest::get()
            .uri("/")
            .insert_header((X_REQUEST_ID, "gw-5f2a"))
            .to_request();
        let response = call_service(&app, request).await;

        assert_eq!(response.headers().get(&X_REQUEST_ID).unwrap(), "gw-5f2a");
        let log = captured.text();
        for message in ["inside the handler", "answered"] {
            let line = log
                .lines()
                .find(|line| line.contains(message))
                .unwrap_or_else(|| panic!("no {message:?} line in:\n{log}"));
            assert!(line.contains("request_id=gw-5f2a"), "{line}");
        }
    }
}
