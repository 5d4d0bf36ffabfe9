-- vehicle_state is updated in place for every vehicle in every batch: with half of each
-- page kept free, PostgreSQL can put the new row version beside the old one (a HOT
-- update, no new index entry). Measured: 10,000 vehicles a batch, 5.5 -> 3.6 us of
-- server CPU per row. Applies to pages written from now on; VACUUM FULL rewrites the rest.
ALTER TABLE vehicle_state SET (fillfactor = 50);
