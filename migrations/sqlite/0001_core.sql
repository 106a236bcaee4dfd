-- The core schema: one table per thing an actor owns.
-- Ids: order and payment ids are UUIDv7 stored as 16-byte blobs; product ids are
-- the client's own keys. Money is integer cents. Times are RFC 3339 text (UTC).

-- Inventory: products and their stock. `version` grows with every change, so an
-- in-memory snapshot can tell a newer row from an older one.
CREATE TABLE product (
    product_id   TEXT PRIMARY KEY NOT NULL,
    product_name TEXT NOT NULL,
    price        INTEGER NOT NULL CHECK (price > 0),
    stock        INTEGER NOT NULL CHECK (stock >= 0),
    version      INTEGER NOT NULL DEFAULT 1,
    updated_at   TEXT NOT NULL
);

-- Inventory: at most one reservation per order, which makes `Reserve` idempotent.
-- RESERVED holds stock back; COMMITTED means the order took it; RELEASED gave it back.
CREATE TABLE reservation (
    order_id   BLOB PRIMARY KEY NOT NULL,
    product_id TEXT NOT NULL REFERENCES product (product_id),
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    state      TEXT NOT NULL CHECK (state IN ('RESERVED', 'COMMITTED', 'RELEASED')),
    updated_at TEXT NOT NULL
);

-- Orders: the order and where its saga stands. `status` is derived from `step` but
-- kept as a column so that recovery can find unfinished orders by index.
-- `idempotency_key` is unique: the database is the backstop for concurrent retries.
CREATE TABLE shop_order (
    order_id        BLOB PRIMARY KEY NOT NULL,
    product_id      TEXT NOT NULL,
    quantity        INTEGER NOT NULL CHECK (quantity > 0),
    total_amount    INTEGER NOT NULL CHECK (total_amount >= 0),
    step            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED', 'PAYMENT_FAILED')),
    reason          TEXT,
    idempotency_key TEXT UNIQUE,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX shop_order_unfinished ON shop_order (order_id) WHERE status = 'PENDING';

-- Orders: the outbox of status changes, written in the same transaction as the
-- change itself; live notifications and late subscribers read it.
CREATE TABLE order_event (
    order_id BLOB NOT NULL REFERENCES shop_order (order_id),
    seq      INTEGER NOT NULL,
    step     TEXT NOT NULL,
    status   TEXT NOT NULL,
    reason   TEXT,
    at       TEXT NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- Payment: one charge per order, whatever its outcome. The unique order id is what
-- makes a second `Charge` for the same order return the first payment.
CREATE TABLE payment (
    payment_id   BLOB PRIMARY KEY NOT NULL,
    order_id     BLOB NOT NULL UNIQUE,
    total_amount INTEGER NOT NULL CHECK (total_amount >= 0),
    status       TEXT NOT NULL CHECK (status IN ('SUCCEEDED', 'DECLINED')),
    created_at   TEXT NOT NULL
);
