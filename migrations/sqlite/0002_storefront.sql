-- The storefront's "my orders": the anonymous shopper (a browser, by cookie) who
-- placed an order. NULL for orders placed through the API.
ALTER TABLE shop_order ADD COLUMN shopper_id BLOB;
CREATE INDEX shop_order_by_shopper ON shop_order (shopper_id, order_id) WHERE shopper_id IS NOT NULL;
