-- The schema on Postgres: the same tables as on SQLite (see migrations/sqlite),
-- with native types. Integers are BIGINT so that the shared statements bind and
-- decode the same Rust values on both backends. Money is integer cents.

-- Inventory: products and their stock. `version` grows with every change.
CREATE TABLE product (
    product_id   TEXT PRIMARY KEY,
    product_name TEXT NOT NULL,
    price        BIGINT NOT NULL CHECK (price > 0),
    stock        BIGINT NOT NULL CHECK (stock >= 0),
    version      BIGINT NOT NULL DEFAULT 1,
    updated_at   TIMESTAMPTZ NOT NULL
);

-- Inventory: at most one reservation per order, which makes `Reserve` idempotent
-- even when two instances drive the same saga.
CREATE TABLE reservation (
    order_id   UUID PRIMARY KEY,
    product_id TEXT NOT NULL REFERENCES product (product_id),
    quantity   BIGINT NOT NULL CHECK (quantity > 0),
    state      TEXT NOT NULL CHECK (state IN ('RESERVED', 'COMMITTED', 'RELEASED')),
    updated_at TIMESTAMPTZ NOT NULL
);

-- Orders: the order and where its saga stands. `idempotency_key` is unique: the
-- backstop for retries that reach different instances. `lease_until` is when the
-- instance driving the saga loses it to whoever claims it; NULL means the lease
-- of the instance that placed the order, which runs from `created_at`.
CREATE TABLE shop_order (
    order_id        UUID PRIMARY KEY,
    product_id      TEXT NOT NULL,
    quantity        BIGINT NOT NULL CHECK (quantity > 0),
    total_amount    BIGINT NOT NULL CHECK (total_amount >= 0),
    step            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('PENDING', 'CONFIRMED', 'REJECTED', 'PAYMENT_FAILED')),
    reason          TEXT,
    idempotency_key TEXT UNIQUE,
    shopper_id      UUID,
    lease_until     TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX shop_order_unfinished ON shop_order (order_id) WHERE status = 'PENDING';
CREATE INDEX shop_order_by_shopper ON shop_order (shopper_id, order_id) WHERE shopper_id IS NOT NULL;

-- Orders: the outbox of status changes, written in the same transaction as the
-- change, and announced with NOTIFY when that transaction commits.
CREATE TABLE order_event (
    order_id UUID NOT NULL REFERENCES shop_order (order_id),
    seq      BIGINT NOT NULL,
    step     TEXT NOT NULL,
    status   TEXT NOT NULL,
    reason   TEXT,
    at       TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- Payment: one charge per order, whatever its outcome, across every instance.
CREATE TABLE payment (
    payment_id   UUID PRIMARY KEY,
    order_id     UUID NOT NULL UNIQUE,
    total_amount BIGINT NOT NULL CHECK (total_amount >= 0),
    status       TEXT NOT NULL CHECK (status IN ('SUCCEEDED', 'DECLINED')),
    created_at   TIMESTAMPTZ NOT NULL
);
