-- A reservation per order line: an order of several products holds stock of each
-- of them, all or none. The key becomes (order, product); an order's lines are
-- still decided together and once, and refused together (each line REFUSED).
ALTER TABLE reservation DROP CONSTRAINT reservation_pkey;
ALTER TABLE reservation ADD PRIMARY KEY (order_id, product_id);
