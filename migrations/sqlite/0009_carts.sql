-- Orders: the shoppers' carts. A cart belongs to the anonymous shopper (the
-- browser's cookie) and holds a line per product until it is checked out, in
-- the order the products were added. Kept in the database so that it survives
-- a restart and is the same on every instance.
CREATE TABLE cart_line (
    shopper_id BLOB NOT NULL,
    product_id TEXT NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    -- Microseconds since the epoch: lines list in the order they were added.
    added_at   INTEGER NOT NULL,
    PRIMARY KEY (shopper_id, product_id)
);
