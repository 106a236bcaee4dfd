//! The admin's sessions. Signing in opens one: a row with a random id, the
//! token its forms carry against cross-site posts, its expiry, and a digest of
//! the admin token it was opened with. Every admin request looks its session up,
//! so signing out (deleting the row) ends it at once, on every instance sharing
//! the database, and a changed admin token ends every session opened with the
//! old one. The cookie that names a session is the HTTP layer's business.

use std::time::Duration;

use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::store::{AdminSessionRow, Store, StoreError};

/// The longest a session lasts.
pub const SESSION_LENGTH: Duration = Duration::from_secs(12 * 60 * 60);

/// A signed-in admin's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSession {
    pub id: Uuid,
    /// The token the session's forms carry.
    pub csrf: String,
    /// Unix seconds.
    pub expires_at: i64,
}

impl AdminSession {
    pub fn accepts_csrf(&self, presented: &str) -> bool {
        self.csrf.as_bytes().ct_eq(presented.as_bytes()).into()
    }
}

#[derive(Clone)]
pub struct AdminSessions {
    store: Store,
    /// A keyed digest of today's admin token: only sessions opened with it count.
    token_digest: String,
}

impl AdminSessions {
    pub fn new(store: Store, token_digest: String) -> AdminSessions {
        AdminSessions {
            store,
            token_digest,
        }
    }

    pub async fn open(&self) -> Result<AdminSession, StoreError> {
        let csrf: [u8; 32] = rand::random();
        let session = AdminSession {
            id: Uuid::new_v4(),
            csrf: csrf.iter().map(|b| format!("{b:02x}")).collect(),
            expires_at: now() + SESSION_LENGTH.as_secs() as i64,
        };
        self.store
            .open_session(AdminSessionRow {
                session_id: session.id,
                token_digest: self.token_digest.clone(),
                csrf: session.csrf.clone(),
                expires_at: session.expires_at,
            })
            .await?;
        Ok(session)
    }

    /// The session, if it exists, has not expired and was opened with today's token.
    pub async fn find(&self, id: Uuid) -> Result<Option<AdminSession>, StoreError> {
        let Some(row) = self.store.admin_session(id).await? else {
            return Ok(None);
        };
        let same_token: bool = row
            .token_digest
            .as_bytes()
            .ct_eq(self.token_digest.as_bytes())
            .into();
        Ok(
            (same_token && row.expires_at > now()).then_some(AdminSession {
                id: row.session_id,
                csrf: row.csrf,
                expires_at: row.expires_at,
            }),
        )
    }

    /// Ends the session; false when it had ended already.
    pub async fn end(&self, id: Uuid) -> Result<bool, StoreError> {
        self.store.end_session(id).await
    }
}

/// Unix seconds now.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[actix_rt::test]
    async fn a_session_counts_only_with_the_token_that_opened_it() {
        let (_dir, store) = crate::actors::testing::database().await;
        let today = AdminSessions::new(store.clone(), "digest of today's token".to_owned());
        let rotated = AdminSessions::new(store, "digest of a new token".to_owned());

        let session = today.open().await.unwrap();
        assert_eq!(today.find(session.id).await.unwrap(), Some(session.clone()));
        assert_eq!(rotated.find(session.id).await.unwrap(), None);
        assert!(session.accepts_csrf(&session.csrf.clone()));
        assert!(!session.accepts_csrf("guess"));

        assert!(today.end(session.id).await.unwrap());
        assert_eq!(today.find(session.id).await.unwrap(), None);
    }
}
