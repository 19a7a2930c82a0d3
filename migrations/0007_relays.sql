-- Which relay answered for each delivery ('host:port'): a campaign of tens of millions goes
-- through several relays, and the audit must say which one took each letter. NULL for letters
-- not handed to a relay yet (and for those sent before this column existed).
ALTER TABLE deliveries ADD COLUMN relay TEXT;

-- What each send run slowed and why: the relay (its 421s) or a recipient domain (its rate
-- replies), how often, the rate it ended at (NULL: back to full) and the last reply that did it.
CREATE TABLE run_pacing (
    run_id      INTEGER NOT NULL,
    scope       TEXT NOT NULL,      -- relay | domain
    name        TEXT NOT NULL,      -- host:port of the relay, or the domain
    decreases   INTEGER NOT NULL,
    final_rate  REAL,
    reason      TEXT,
    PRIMARY KEY (run_id, scope, name)
);
