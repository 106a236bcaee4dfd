-- A reservation per order line: an order of several products holds stock of each
-- of them, all or none. The key becomes (order, product); an order's lines are
-- still decided together and once, and refused together (each line REFUSED).
CREATE TABLE reservation_new (
    order_id   BLOB NOT NULL,
    product_id TEXT NOT NULL REFERENCES product (product_id),
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    state      TEXT NOT NULL CHECK (state IN ('RESERVED', 'COMMITTED', 'RELEASED', 'REFUSED')),
    updated_at TEXT NOT NULL,
    PRIMARY KEY (order_id, product_id)
);
INSERT INTO reservation_new (order_id, product_id, quantity, state, updated_at)
    SELECT order_id, product_id, quantity, state, updated_at FROM reservation;
DROP TABLE reservation;
ALTER TABLE reservation_new RENAME TO reservation;
