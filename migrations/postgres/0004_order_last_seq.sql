-- The number of the order's last event, kept with the order: a move takes the
-- next number as it moves the order, so a batch records its events with one
-- plain insert instead of looking each order's last number up.
ALTER TABLE shop_order ADD COLUMN last_seq BIGINT NOT NULL DEFAULT 1;
UPDATE shop_order SET last_seq =
    (SELECT COALESCE(MAX(seq), 1) FROM order_event WHERE order_event.order_id = shop_order.order_id);
