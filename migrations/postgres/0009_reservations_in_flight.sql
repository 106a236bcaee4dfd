-- The reservations still RESERVED (orders whose payment is not settled yet),
-- indexed apart: taking them for good or giving them back finds the batch's
-- among these few, whatever the table's size. A write connection plans each
-- statement once, often while the table is still empty; with only the primary
-- key, that plan scanned every reservation ever made, batch after batch, until
-- the table's first automatic analysis.
CREATE INDEX reservation_in_flight ON reservation (order_id) WHERE state = 'RESERVED';
