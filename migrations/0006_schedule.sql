-- [schedule]: the campaign's days and who goes first.

-- Letters counted against each day's allowance (the day in schedule.timezone), in total
-- (domain '') and per recipient domain with a daily cap. A claim reads and raises these in the
-- transaction that moves the letters to 'sending', so neither a restarted run nor a second one
-- can go over a cap; a letter claimed but not attempted gives its place back.
CREATE TABLE schedule_days (
    day     TEXT NOT NULL,                 -- YYYY-MM-DD
    domain  TEXT NOT NULL,                 -- '' for all domains together
    claimed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, domain)
) WITHOUT ROWID;

-- The day whose allowance a claim took (NULL without a schedule), to give it back on release.
ALTER TABLE deliveries ADD COLUMN claim_day TEXT;
-- Who goes first among new letters (schedule.order; 0 for everyone without one); import order
-- (person_id) breaks ties. Written by send before it claims.
ALTER TABLE deliveries ADD COLUMN claim_rank INTEGER NOT NULL DEFAULT 0;
CREATE INDEX deliveries_claim_order ON deliveries(state, generation, claim_rank);
