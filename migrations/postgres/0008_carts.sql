-- The shoppers' carts: see migrations/sqlite/0009_carts.sql.
CREATE TABLE cart_line (
    shopper_id UUID NOT NULL,
    product_id TEXT NOT NULL,
    quantity   BIGINT NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    added_at   BIGINT NOT NULL,
    PRIMARY KEY (shopper_id, product_id)
);
