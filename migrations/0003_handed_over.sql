-- When a send run handed this generation's letter to a relay (MAIL FROM was about to go out).
-- A run that dies leaves its claimed deliveries in `sending`; only those with this mark may have
-- reached the relay, so only those are flagged as possible duplicates when sent again.
ALTER TABLE deliveries ADD COLUMN handed_over_at INTEGER;
