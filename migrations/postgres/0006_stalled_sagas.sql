-- A saga whose steps keep failing marks its order stalled, with the last error,
-- for the operator (the admin's orders page); the order's next move clears it.
ALTER TABLE shop_order ADD COLUMN stalled_since TIMESTAMPTZ;
ALTER TABLE shop_order ADD COLUMN last_error TEXT;
CREATE INDEX shop_order_stalled ON shop_order (order_id) WHERE stalled_since IS NOT NULL;
