-- Admin sessions with an identity: the cookie names a row here, so signing out
-- (deleting the row) ends that session alone, on every instance. A session
-- holds the digest of the admin token it was opened with: once the token
-- changes, no earlier session matches it. Times are Unix seconds.
CREATE TABLE admin_session (
    session_id   BLOB PRIMARY KEY NOT NULL,
    token_digest TEXT NOT NULL,
    csrf         TEXT NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX admin_session_expiry ON admin_session (expires_at);

-- Secrets the instances share, made once by whichever starts first (the key
-- that signs admin session cookies when MINIMART_SESSION_KEY is unset).
CREATE TABLE setting (
    name  TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

-- Idempotency keys belong to their owner: a storefront key to its shopper (the
-- browser's cookie), an API key to the API's own space. Keys stored before had
-- no owner; an order with a shopper came from the storefront.
UPDATE shop_order
SET idempotency_key = CASE
        WHEN shopper_id IS NULL THEN 'api:' || idempotency_key
        ELSE 'shopper:' || lower(hex(shopper_id)) || ':' || idempotency_key
    END
WHERE idempotency_key IS NOT NULL;
