-- A reservation may also be REFUSED: there was not enough stock when the order
-- asked, and it never holds any. Recorded so that every run of the order's saga,
-- on whichever instance, gets the same answer, even when stock comes back in
-- between: an order rejected by one run can then never hold stock reserved by
-- another.
ALTER TABLE reservation DROP CONSTRAINT reservation_state_check;
ALTER TABLE reservation ADD CONSTRAINT reservation_state_check
    CHECK (state IN ('RESERVED', 'COMMITTED', 'RELEASED', 'REFUSED'));
