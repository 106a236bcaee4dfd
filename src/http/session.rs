//! Who is asking: the anonymous shopper (a browser, by cookie) and the admin (a
//! bearer token on the API, a session cookie on the admin pages).
//!
//! The admin session cookie names a stored session (see
//! [`AdminSessions`](crate::actors::sessions)) and is sealed with the cookie
//! crate's private jar (authenticated encryption) under a key derived from the
//! server's session secret, never from the admin token: a captured cookie tells
//! nothing about the token. Form posts must come from the shop's public origin
//! and carry their session's CSRF token; the cookie is also `SameSite=Strict`.

use std::future::{Ready, ready};

use actix_web::body::MessageBody;
use actix_web::cookie::{Cookie, CookieJar, Key, SameSite, time};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, web};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::error::ApiError;
use super::throttle::{Throttle, client_address};
use crate::actors::sessions::{self, AdminSession, AdminSessions, SESSION_LENGTH};
use crate::config::{AdminToken, PublicUrl, SessionKey};
use crate::domain::ShopperId;
use crate::store::StoreError;

pub(super) const SHOPPER_COOKIE: &str = "minimart_shopper";
pub(super) const ADMIN_COOKIE: &str = "minimart_admin";
const SHOPPER_COOKIE_DAYS: i64 = 365;
/// Clocks of instances may differ a little.
const CLOCK_SKEW_SECS: i64 = 60;

/// Where the shop is served from, as browsers see it: the origins its forms may
/// be posted from, and whether its cookies are `Secure`.
#[derive(Debug, Clone)]
pub struct Site {
    origins: Vec<String>,
    secure: bool,
}

impl Site {
    /// The configured public URL; without one, the address listened on, and on
    /// loopback also the names a browser on this machine uses for it.
    pub fn new(public_url: Option<&PublicUrl>, listening: std::net::SocketAddr) -> Site {
        let Some(url) = public_url else {
            let port = listening.port();
            let mut origins = vec![PublicUrl::of_listener(listening).origin().to_owned()];
            if listening.ip().is_loopback() {
                origins.extend([
                    format!("http://localhost:{port}"),
                    format!("http://127.0.0.1:{port}"),
                    format!("http://[::1]:{port}"),
                ]);
            }
            return Site {
                origins,
                secure: false,
            };
        };
        Site {
            origins: vec![url.origin().to_owned()],
            secure: url.is_https(),
        }
    }

    /// False when a browser says the request comes from elsewhere: an `Origin`
    /// that is not the shop's (compared with the configured origin, never with
    /// `Host`, which a proxy or client may set), or `Sec-Fetch-Site: cross-site`.
    /// A request with neither (curl, a script) is judged by what else it carries.
    pub fn same_origin(&self, req: &HttpRequest) -> bool {
        let headers = req.headers();
        let cross_site = headers.get("Sec-Fetch-Site").is_some_and(|site| {
            site.as_bytes() == b"cross-site" || site.as_bytes() == b"same-site"
        });
        let foreign_origin = headers.get(header::ORIGIN).is_some_and(|origin| {
            let origin = origin.to_str().unwrap_or_default().to_ascii_lowercase();
            !self.origins.contains(&origin)
        });
        !cross_site && !foreign_origin
    }

    /// A cookie of the shop's, `Secure` when the shop is served over HTTPS.
    fn cookie(&self, name: &'static str, value: String, path: &'static str) -> Cookie<'static> {
        Cookie::build(name, value)
            .path(path)
            .http_only(true)
            .secure(self.secure)
            .finish()
    }
}

/// Gives every browser that uses the storefront a shopper id cookie.
pub(super) async fn shopper_cookie(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let path = req.path();
    let probe = path == "/healthz" || path == "/readyz";
    if path.starts_with("/api/") || path.starts_with("/static/") || probe {
        return next.call(req).await;
    }
    let known = req
        .cookie(SHOPPER_COOKIE)
        .and_then(|cookie| ShopperId::parse(cookie.value()).ok());
    let shopper = known.unwrap_or_else(ShopperId::generate);
    req.extensions_mut().insert(shopper);
    let site = req.app_data::<web::Data<Site>>().cloned();
    let mut response = next.call(req).await?;
    // A refused request (a cross-site post, say) leaves no cookie behind.
    if let (None, Some(site), false) = (known, site, response.status().is_client_error()) {
        let mut cookie = site.cookie(SHOPPER_COOKIE, shopper.to_string(), "/");
        cookie.set_same_site(SameSite::Lax);
        cookie.set_max_age(time::Duration::days(SHOPPER_COOKIE_DAYS));
        response.response_mut().add_cookie(&cookie)?;
    }
    Ok(response)
}

/// Admin pages and a shopper's order pages are nobody else's: no cache keeps them.
pub(super) async fn no_store(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let path = req.path();
    let private = path == "/admin"
        || path.starts_with("/admin/")
        || path == "/orders"
        || path.starts_with("/orders/");
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    if private && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    Ok(response)
}

/// The browser's shopper id (set by [`shopper_cookie`]).
pub(super) struct Shopper(pub ShopperId);

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

/// The admin's credentials: the token, the sessions opened with it, the key
/// that seals their cookies, and the throttle on wrong guesses.
pub struct AdminAuth {
    token: AdminToken,
    key: Key,
    sessions: AdminSessions,
    throttle: Throttle,
}

impl AdminAuth {
    pub fn new(token: AdminToken, secret: &SessionKey, store: crate::store::Store) -> AdminAuth {
        // At least 32 bytes, as `derive_from` needs: `SessionKey` checks.
        let key = Key::derive_from(secret.reveal().as_bytes());
        // Sessions remember which token opened them by this digest, keyed so
        // that a copy of the database does not help to guess the token.
        let digest = Sha256::new()
            .chain_update(key.signing())
            .chain_update(token.reveal().as_bytes())
            .finalize();
        let digest = digest.iter().map(|b| format!("{b:02x}")).collect();
        AdminAuth {
            token,
            key,
            sessions: AdminSessions::new(store, digest),
            throttle: Throttle::default(),
        }
    }

    /// Whether `presented` is the admin token. An address that guessed wrong
    /// too often is refused before the comparison, until its lockout ends.
    pub fn check_token(&self, req: &HttpRequest, presented: &str) -> Result<bool, ApiError> {
        let client = client_address(req);
        let locked_out = |retry_after: std::time::Duration| ApiError::TooManyAttempts {
            retry_after_secs: retry_after.as_secs().max(1),
        };
        if let Some(client) = client {
            self.throttle.admit(client).map_err(locked_out)?;
        }
        let matches = self.token.matches(presented);
        match (client, matches) {
            (Some(client), true) => self.throttle.succeeded(client),
            (Some(client), false) => {
                if let Err(retry_after) = self.throttle.failed(client) {
                    tracing::warn!(%client, "admin token guessed wrong too often: locked out");
                    return Err(locked_out(retry_after));
                }
            }
            (None, _) => {}
        }
        Ok(matches)
    }

    /// Opens a session; the cookie that carries it.
    pub async fn sign_in(&self, site: &Site) -> Result<Cookie<'static>, ApiError> {
        let session = self.sessions.open().await.map_err(unavailable)?;
        let value = format!("{}.{}", session.id.simple(), session.expires_at);
        let mut cookie = site.cookie(ADMIN_COOKIE, value, "/admin");
        cookie.set_same_site(SameSite::Strict);
        cookie.set_max_age(time::Duration::seconds(SESSION_LENGTH.as_secs() as i64));
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key).add(cookie);
        jar.get(ADMIN_COOKIE)
            .cloned()
            .ok_or_else(|| ApiError::Internal("the sealed session cookie went missing".into()))
    }

    /// The request's session, if its cookie is genuine and names a session
    /// that is still open.
    pub async fn session(&self, req: &HttpRequest) -> Result<Option<AdminSession>, ApiError> {
        let Some(id) = req.cookie(ADMIN_COOKIE).and_then(|c| self.unseal(c)) else {
            return Ok(None);
        };
        self.sessions.find(id).await.map_err(unavailable)
    }

    /// The session id a cookie names, if the cookie was sealed here and its
    /// expiry is plausible: not past, and not further ahead than a session lasts.
    fn unseal(&self, cookie: Cookie<'static>) -> Option<Uuid> {
        let cookie = CookieJar::new().private(&self.key).decrypt(cookie)?;
        let (id, expires) = cookie.value().split_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        let now = sessions::now();
        let longest = now + SESSION_LENGTH.as_secs() as i64 + CLOCK_SKEW_SECS;
        (expires > now && expires <= longest)
            .then(|| Uuid::parse_str(id).ok())
            .flatten()
    }

    pub async fn sign_out(&self, session: &AdminSession) -> Result<(), ApiError> {
        self.sessions
            .end(session.id)
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// A cookie that removes the session cookie from the browser.
    pub fn signed_out_cookie(site: &Site) -> Cookie<'static> {
        let mut cookie = site.cookie(ADMIN_COOKIE, String::new(), "/admin");
        cookie.set_same_site(SameSite::Strict);
        cookie.make_removal();
        cookie
    }
}

fn unavailable(error: StoreError) -> ApiError {
    ApiError::Unavailable(Box::new(error))
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn site(public_url: &str) -> Site {
        let listening = "127.0.0.1:8080".parse().expect("an address");
        Site::new(Some(&public_url.parse().expect("a URL")), listening)
    }

    #[test]
    fn form_posts_must_come_from_the_public_origin() {
        let site = site("https://shop.test");
        let post = |headers: &[(&str, &str)]| {
            let mut req = TestRequest::default().insert_header((header::HOST, "evil.test"));
            for &(name, value) in headers {
                req = req.insert_header((name, value));
            }
            site.same_origin(&req.to_http_request())
        };
        assert!(post(&[("Origin", "https://shop.test")]));
        assert!(post(&[("Origin", "HTTPS://SHOP.TEST")]));
        assert!(post(&[]), "no Origin: not a browser; judged by the rest");
        // Host is the attacker's to choose; it is not the yardstick.
        assert!(!post(&[("Origin", "https://evil.test")]));
        assert!(!post(&[("Origin", "http://shop.test")]));
        assert!(!post(&[("Origin", "null")]));
        assert!(!post(&[("Sec-Fetch-Site", "cross-site")]));
        assert!(post(&[("Sec-Fetch-Site", "same-origin")]));
    }

    #[test]
    fn without_a_public_url_the_loopback_names_of_the_listener_count() {
        let listening = "127.0.0.1:8080".parse().expect("an address");
        let site = Site::new(None, listening);
        for origin in ["http://localhost:8080", "http://127.0.0.1:8080"] {
            let req = TestRequest::default()
                .insert_header((header::ORIGIN, origin))
                .to_http_request();
            assert!(site.same_origin(&req), "{origin}");
        }
        let req = TestRequest::default()
            .insert_header((header::ORIGIN, "http://localhost:9999"))
            .to_http_request();
        assert!(!site.same_origin(&req));
    }

    #[test]
    fn cookies_are_secure_over_https() {
        let secure = site("https://shop.test").cookie("c", "v".into(), "/");
        let plain = site("http://shop.test").cookie("c", "v".into(), "/");
        assert_eq!(secure.secure(), Some(true));
        assert_ne!(plain.secure(), Some(true));
    }
}
