-- Orders of several lines: see migrations/sqlite/0008_order_lines.sql.
ALTER TABLE shop_order ADD COLUMN lines TEXT;
ALTER TABLE shop_order ADD COLUMN payment_method TEXT;
UPDATE shop_order SET lines = json_build_array(json_build_object(
    'product_id', product_id,
    'product_name', COALESCE(
        (SELECT product_name FROM product WHERE product.product_id = shop_order.product_id),
        product_id),
    'quantity', quantity,
    'unit_price', GREATEST(1, total_amount / quantity)))::text;

ALTER TABLE payment ADD COLUMN reason TEXT;
