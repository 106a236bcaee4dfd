//! Who is asking: the anonymous shopper (a browser, by cookie) and the admin (a
//! signed session cookie). Admin sessions are stateless: the cookie holds an expiry
//! and an HMAC of it keyed by the admin token, so any instance that knows the token
//! can check it, and changing the token signs everyone out. Forms carry a CSRF token
//! derived from the session; the session cookie is also `SameSite=Strict`, and a
//! cross-origin `Origin` header is refused outright.

use std::future::{Ready, ready};
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, SameSite, time};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::AdminToken;
use crate::domain::ShopperId;

pub const SHOPPER_COOKIE: &str = "minimart_shopper";
pub const ADMIN_COOKIE: &str = "minimart_admin";
const ADMIN_SESSION: Duration = Duration::from_secs(12 * 60 * 60);
const SHOPPER_COOKIE_DAYS: i64 = 365;

/// Gives every browser that uses the storefront a shopper id cookie.
pub async fn shopper_cookie(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let path = req.path();
    if path.starts_with("/api/") || path.starts_with("/static/") || path == "/healthz" {
        return next.call(req).await;
    }
    let known = req
        .cookie(SHOPPER_COOKIE)
        .and_then(|cookie| ShopperId::parse(cookie.value()).ok());
    let shopper = known.unwrap_or_else(ShopperId::generate);
    req.extensions_mut().insert(shopper);
    let mut response = next.call(req).await?;
    if known.is_none() {
        let cookie = Cookie::build(SHOPPER_COOKIE, shopper.to_string())
            .path("/")
            .http_only(true)
            .same_site(SameSite::Lax)
            .max_age(time::Duration::days(SHOPPER_COOKIE_DAYS))
            .finish();
        response.response_mut().add_cookie(&cookie)?;
    }
    Ok(response)
}

/// The browser's shopper id (set by [`shopper_cookie`]).
pub struct Shopper(pub ShopperId);

impl FromRequest for Shopper {
    type Error = ApiError;
    type Future = Ready<Result<Shopper, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let shopper = req.extensions().get::<ShopperId>().copied();
        ready(shopper.map(Shopper).ok_or_else(|| {
            ApiError::Internal("the shopper cookie middleware is not installed".into())
        }))
    }
}

type HmacSha256 = Hmac<Sha256>;

fn sign(token: &AdminToken, message: &str) -> String {
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = HmacSha256::new_from_slice(token.reveal().as_bytes()) else {
        return String::new();
    };
    mac.update(message.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// A new admin session cookie, valid for twelve hours.
pub fn admin_session_cookie(token: &AdminToken) -> Cookie<'static> {
    let expires = now_secs() + ADMIN_SESSION.as_secs();
    let value = format!(
        "{expires}.{}",
        sign(token, &format!("admin-session:{expires}"))
    );
    Cookie::build(ADMIN_COOKIE, value)
        .path("/admin")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(time::Duration::seconds(ADMIN_SESSION.as_secs() as i64))
        .finish()
}

/// A cookie that ends the admin session.
pub fn signed_out_cookie() -> Cookie<'static> {
    let mut cookie = Cookie::build(ADMIN_COOKIE, "")
        .path("/admin")
        .http_only(true)
        .same_site(SameSite::Strict)
        .finish();
    cookie.make_removal();
    cookie
}

/// A signed-in admin, with the CSRF token its forms must carry.
pub struct AdminSession {
    pub csrf: String,
}

impl AdminSession {
    /// The session in the request's cookie, if it is genuine and not expired.
    pub fn from_request(req: &HttpRequest, token: &AdminToken) -> Option<AdminSession> {
        let cookie = req.cookie(ADMIN_COOKIE)?;
        let (expires, signature) = cookie.value().split_once('.')?;
        let expected = sign(token, &format!("admin-session:{expires}"));
        let genuine: bool = expected.as_bytes().ct_eq(signature.as_bytes()).into();
        let expires: u64 = expires.parse().ok()?;
        (genuine && expires > now_secs()).then(|| AdminSession {
            csrf: sign(token, &format!("csrf:{}", cookie.value())),
        })
    }

    pub fn accepts_csrf(&self, presented: &str) -> bool {
        self.csrf.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

/// False when the request says it comes from another origin. Browsers send
/// `Origin` on every form post; a request without it (curl, a test) is judged by
/// the session and the CSRF token alone.
pub fn same_origin(req: &HttpRequest) -> bool {
    let Some(origin) = req.headers().get(header::ORIGIN) else {
        return true;
    };
    let host = req.connection_info().host().to_owned();
    origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .is_some_and(|(_, origin_host)| origin_host == host)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn token(raw: &str) -> AdminToken {
        raw.parse().expect("a token")
    }

    #[test]
    fn a_session_is_accepted_only_with_the_token_that_signed_it() {
        let cookie = admin_session_cookie(&token("secret"));
        let req = TestRequest::default().cookie(cookie).to_http_request();

        assert!(AdminSession::from_request(&req, &token("secret")).is_some());
        assert!(AdminSession::from_request(&req, &token("other")).is_none());
    }

    #[test]
    fn a_forged_or_expired_session_is_refused() {
        let forged = Cookie::new(ADMIN_COOKIE, format!("{}.deadbeef", now_secs() + 60));
        let req = TestRequest::default().cookie(forged).to_http_request();
        assert!(AdminSession::from_request(&req, &token("secret")).is_none());

        let past = now_secs() - 1;
        let expired = Cookie::new(
            ADMIN_COOKIE,
            format!(
                "{past}.{}",
                sign(&token("secret"), &format!("admin-session:{past}"))
            ),
        );
        let req = TestRequest::default().cookie(expired).to_http_request();
        assert!(AdminSession::from_request(&req, &token("secret")).is_none());
    }

    #[test]
    fn the_csrf_token_belongs_to_the_session() {
        let req = TestRequest::default()
            .cookie(admin_session_cookie(&token("secret")))
            .to_http_request();
        let session = AdminSession::from_request(&req, &token("secret")).expect("a session");

        assert!(session.accepts_csrf(&session.csrf.clone()));
        assert!(!session.accepts_csrf("guess"));
    }

    #[test]
    fn cross_origin_posts_are_told_apart() {
        let same = TestRequest::default()
            .insert_header((header::HOST, "shop.test"))
            .insert_header((header::ORIGIN, "http://shop.test"))
            .to_http_request();
        let other = TestRequest::default()
            .insert_header((header::HOST, "shop.test"))
            .insert_header((header::ORIGIN, "https://evil.test"))
            .to_http_request();
        let none = TestRequest::default().to_http_request();

        assert!(same_origin(&same));
        assert!(!same_origin(&other));
        assert!(same_origin(&none));
    }
}
