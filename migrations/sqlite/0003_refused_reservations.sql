-- A reservation may also be REFUSED: there was not enough stock when the order
-- asked, and it never holds any. Recorded so that every run of the order's saga
-- gets the same answer, even when stock comes back in between: an order rejected
-- by one run can then never hold stock reserved by another.
-- SQLite cannot change a CHECK constraint in place: the table is rebuilt.
CREATE TABLE reservation_new (
    order_id   BLOB PRIMARY KEY NOT NULL,
    product_id TEXT NOT NULL REFERENCES product (product_id),
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    state      TEXT NOT NULL CHECK (state IN ('RESERVED', 'COMMITTED', 'RELEASED', 'REFUSED')),
    updated_at TEXT NOT NULL
);
INSERT INTO reservation_new (order_id, product_id, quantity, state, updated_at)
    SELECT order_id, product_id, quantity, state, updated_at FROM reservation;
DROP TABLE reservation;
ALTER TABLE reservation_new RENAME TO reservation;
