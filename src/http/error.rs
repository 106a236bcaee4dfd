//! The one place where errors become HTTP answers. Every error a client can cause
//! is a 4xx with an RFC 9457 problem+json body that says what was wrong (on the
//! storefront's pages, the same error as an HTML page: `pages::PageError`); a 5xx
//! means an outage or a bug, and is logged with its cause chain.

use actix_web::error::{PathError, QueryPayloadError};
use actix_web::http::{Method, StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use serde::Serialize;

use super::pages::PageError;
use crate::actors::admission::Overloaded;
use crate::actors::inventory::InventoryError;
use crate::actors::orders::OrderError;
use crate::actors::payment::{ChargeError, PaymentError};
use crate::domain::ParseError;
use crate::telemetry::error_chain;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed: bad syntax, a bad path or query, a bad header.
    #[error("{0}")]
    BadRequest(String),
    /// The request is well-formed but its content is refused.
    #[error("{0}")]
    Unprocessable(String),
    /// A field of the request is refused (`field` names it, when known).
    #[error("{detail}")]
    InvalidField {
        field: Option<String>,
        detail: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("a valid admin bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    /// `allow` is what the resource answers, for the `Allow` header.
    #[error("{method} is not allowed on this resource")]
    MethodNotAllowed { method: Method, allow: Vec<Method> },
    /// Too many wrong admin tokens from this address: it may try again later.
    #[error("too many failed attempts: retry after {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    /// The shop is at its limit and refused a new order at once, storing
    /// nothing: the same request may be sent again after `Retry-After`.
    #[error(transparent)]
    Overloaded(#[from] Overloaded),
    /// The payment provider failed (502) or did not answer in time (504): a
    /// passing error, and the charge, idempotent per order, may be sent again.
    #[error("{detail}")]
    PaymentProvider { detail: String, timed_out: bool },
    /// A dependency (the database, an actor) is not answering; retrying may work.
    #[error("the service is temporarily unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// An RFC 9457 problem document, the body of every refusal
/// (`application/problem+json`). `code` is a stable, machine-readable kind.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "about:blank",
    "title": "Unprocessable Entity",
    "status": 422,
    "detail": "the request body is not valid: quantity must be a whole number between 1 and 1000",
    "code": "invalid_request",
    "field": "quantity"
}))]
pub(super) struct Problem<'a> {
    /// Always `about:blank`: the status and `code` say what kind of problem it is.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "about:blank")]
    kind: &'static str,
    /// The status's reason phrase.
    #[schema(value_type = String)]
    title: &'a str,
    /// The HTTP status, as in the answer's status line.
    #[schema(minimum = 400, maximum = 599)]
    status: u16,
    /// What was wrong, for a person.
    detail: String,
    /// The kind of problem, stable for programs.
    #[schema(value_type = String, pattern = "^[a-z_]+$", example = "invalid_request")]
    code: &'static str,
    /// The request field at fault (`quantity`, `items[1].quantity`), for a refused
    /// field, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = String, required = false)]
    field: Option<&'a str>,
}

impl ApiError {
    /// The `Allow` header of a 405, which belongs to the answer whatever its body.
    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unprocessable(_) | ApiError::InvalidField { .. } => "invalid_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::TooManyAttempts { .. } => "too_many_attempts",
            ApiError::Overloaded(_) => "overloaded",
            ApiError::PaymentProvider { .. } => "payment_provider",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl ApiError {
    /// A 5xx is an outage or a bug: logged with its cause chain. A refusal
    /// under overload is neither (and comes by the thousand): counted in
    /// `minimart_orders_shed_total`, logged at debug.
    pub fn log(&self) {
        if let ApiError::Overloaded(overloaded) = self {
            tracing::debug!(%overloaded, "order refused: overloaded");
        } else if self.status_code().is_server_error() {
            tracing::error!(error = %error_chain(self), "request failed");
        }
    }

    /// The headers that come with the error, whether it is answered as a
    /// problem or as a page.
    pub fn add_headers(&self, response: &mut actix_web::HttpResponseBuilder) {
        match self {
            ApiError::Unauthorized => {
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::Unavailable(_) | ApiError::PaymentProvider { .. } => {
                response.insert_header((header::RETRY_AFTER, "1"));
            }
            ApiError::Overloaded(_) => {
                let secs = Overloaded::RETRY_AFTER.as_secs().max(1);
                response.insert_header((header::RETRY_AFTER, secs.to_string()));
            }
            ApiError::TooManyAttempts { retry_after_secs } => {
                response.insert_header((header::RETRY_AFTER, retry_after_secs.to_string()));
            }
            ApiError::MethodNotAllowed { allow, .. } => {
                response.insert_header(header::Allow(allow.clone()));
            }
            _ => {}
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unprocessable(_) | ApiError::InvalidField { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyAttempts { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Overloaded(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::PaymentProvider {
                timed_out: false, ..
            } => StatusCode::BAD_GATEWAY,
            ApiError::PaymentProvider {
                timed_out: true, ..
            } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        self.log();
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        self.add_headers(&mut response);
        response.json(Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code(),
            field: match self {
                ApiError::InvalidField { field, .. } => field.as_deref(),
                _ => None,
            },
        })
    }
}

impl From<ParseError> for ApiError {
    fn from(error: ParseError) -> Self {
        ApiError::BadRequest(error.to_string())
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(error: actix::MailboxError) -> Self {
        ApiError::Unavailable(Box::new(error))
    }
}

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::UnknownProduct { line, .. } => ApiError::InvalidField {
                field: Some(format!("items[{line}].product_id")),
                detail: error.to_string(),
            },
            OrderError::NotSold(_) => ApiError::NotFound(error.to_string()),
            OrderError::TotalTooLarge
            | OrderError::IdempotencyKeyReused
            | OrderError::CartFull
            | OrderError::CartChanged => ApiError::Unprocessable(error.to_string()),
            OrderError::Overloaded(overloaded) => ApiError::Overloaded(overloaded),
            OrderError::Store(_) | OrderError::Catalog(_) | OrderError::Mailbox(_) => {
                ApiError::Unavailable(Box::new(error))
            }
        }
    }
}

impl From<InventoryError> for ApiError {
    fn from(error: InventoryError) -> Self {
        ApiError::Unavailable(Box::new(error))
    }
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> Self {
        ApiError::Unavailable(Box::new(error))
    }
}

impl From<ChargeError> for ApiError {
    fn from(error: ChargeError) -> Self {
        match error {
            ChargeError::AmountMismatch { .. } => ApiError::Unprocessable(error.to_string()),
            ChargeError::NotPayable { .. } => ApiError::Conflict(error.to_string()),
            ChargeError::ProviderFailed | ChargeError::Timeout(_) => ApiError::PaymentProvider {
                detail: error.to_string(),
                timed_out: matches!(error, ChargeError::Timeout(_)),
            },
            ChargeError::Store(_) | ChargeError::Mailbox(_) => {
                ApiError::Unavailable(Box::new(error))
            }
        }
    }
}

/// How a route's refusals are written: problem+json for programs (`/api/`,
/// `/healthz`), an HTML page for people (the storefront). The route table
/// (`http::routes`) puts it on each resource, so that the refusals of extractors
/// (a bad path, query or body) are written as that route's own errors are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorFormat {
    Problem,
    Page,
}

impl ErrorFormat {
    /// The format of the route that `req` matched; problem+json when it says none.
    pub fn of(req: &HttpRequest) -> ErrorFormat {
        req.app_data::<ErrorFormat>()
            .copied()
            .unwrap_or(ErrorFormat::Problem)
    }

    pub fn error(self, error: ApiError) -> actix_web::Error {
        match self {
            ErrorFormat::Problem => error.into(),
            ErrorFormat::Page => PageError(error).into(),
        }
    }
}

pub fn path_error(error: PathError, req: &HttpRequest) -> actix_web::Error {
    let detail = match &error {
        PathError::Deserialize(cause) => cause.to_string(),
        other => other.to_string(),
    };
    ErrorFormat::of(req).error(ApiError::BadRequest(detail))
}

pub fn query_error(error: QueryPayloadError, req: &HttpRequest) -> actix_web::Error {
    let detail = match &error {
        QueryPayloadError::Deserialize(cause) => format!("bad query string: {cause}"),
        other => other.to_string(),
    };
    ErrorFormat::of(req).error(ApiError::BadRequest(detail))
}
