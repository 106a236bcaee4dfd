-- Orders of several lines. `lines` holds the order's lines as placed, a JSON
-- array of {product_id, product_name, quantity, unit_price (cents)}: names and
-- prices are fixed when the order is placed, so a later change to a product
-- does not alter it. Stock is held per line in `reservation`. `product_id` and
-- `quantity` stay, as the first line's, for readers of the seed's shape.
-- `payment_method` is the card an order is paid with, as the provider answered
-- it: {brand, last4, token}, never the number nor the CVC.
ALTER TABLE shop_order ADD COLUMN lines TEXT;
ALTER TABLE shop_order ADD COLUMN payment_method TEXT;
UPDATE shop_order SET lines = json_array(json_object(
    'product_id', product_id,
    'product_name', COALESCE(
        (SELECT product_name FROM product WHERE product.product_id = shop_order.product_id),
        product_id),
    'quantity', quantity,
    'unit_price', MAX(1, total_amount / quantity)));

-- Payment: why the provider declined a charge, when it said.
ALTER TABLE payment ADD COLUMN reason TEXT;
