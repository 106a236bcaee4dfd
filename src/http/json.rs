//! JSON request bodies, parsed straight into domain types. A body that does not
//! parse is refused with a problem naming the field at fault (`quantity`,
//! `items[1].quantity`), found by `serde_path_to_error` as serde descends.

use actix_web::dev::Payload;
use actix_web::error::PayloadError;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;

use super::BODY_LIMIT;
use super::error::ApiError;

/// A request body of JSON (`application/json` or `application/*+json`) as `T`.
pub(super) struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Json<T>, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req.mime_type().ok().flatten().is_some_and(|mime| {
            mime.type_() == "application"
                && (mime.subtype() == "json" || mime.suffix().is_some_and(|s| s == "json"))
        });
        let body = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::UnsupportedMediaType);
            }
            let bytes = body.await.map_err(|error| match error.as_error() {
                Some(PayloadError::Overflow) => ApiError::PayloadTooLarge { limit: BODY_LIMIT },
                _ => ApiError::BadRequest(format!("the request body could not be read: {error}")),
            })?;
            parse(&bytes).map(Json)
        })
    }
}

fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut json).map_err(|error| {
        let path = error.path().to_string();
        let cause = error.into_inner();
        if !cause.is_data() {
            return ApiError::BadRequest(format!("the request body is not valid JSON: {cause}"));
        }
        ApiError::InvalidField {
            field: field(&path, &cause.to_string()),
            detail: format!("the request body is not valid: {cause}"),
        }
    })?;
    json.end().map_err(|cause| {
        ApiError::BadRequest(format!("the request body is not valid JSON: {cause}"))
    })?;
    Ok(value)
}

/// The field a data error is about. serde reports a missing field at the
/// object that lacks it, so the name is taken from its message. A body that is
/// not an object at all (an array, say) has no field at fault.
fn field(path: &str, message: &str) -> Option<String> {
    if path.starts_with('[') {
        return None;
    }
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next());
    let within = (path != ".").then_some(path);
    match (within, missing) {
        (Some(within), Some(missing)) => Some(format!("{within}.{missing}")),
        (None, Some(missing)) => Some(missing.to_owned()),
        (within, None) => within.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde::Deserialize;

    use super::*;
    use crate::domain::Quantity;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Line {
        quantity: Quantity,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Order {
        items: Vec<Line>,
    }

    fn refused_field(body: &str) -> Option<String> {
        match parse::<Order>(body.as_bytes()) {
            Err(ApiError::InvalidField { field, .. }) => field,
            other => panic!("{body}: {other:?}"),
        }
    }

    #[test]
    fn a_refusal_names_the_field_at_fault() {
        let bad_quantity = r#"{"items":[{"quantity":1},{"quantity":0}]}"#;
        assert_eq!(
            refused_field(bad_quantity).as_deref(),
            Some("items[1].quantity")
        );
        assert_eq!(
            refused_field(r#"{"items":[{}]}"#).as_deref(),
            Some("items[0].quantity")
        );
        assert_eq!(refused_field(r#"{}"#).as_deref(), Some("items"));
        assert_eq!(refused_field("null"), None);
    }

    #[test]
    fn bad_syntax_and_trailing_garbage_are_bad_requests() {
        for body in ["{", r#"{"items":[]} x"#, ""] {
            assert!(
                matches!(
                    parse::<Order>(body.as_bytes()),
                    Err(ApiError::BadRequest(_))
                ),
                "{body}"
            );
        }
    }
}
