-- Which relay answered for each delivery ('host:port'): a campaign of tens of millions goes
-- through several relays, and the audit must say which one took each letter. NULL for letters
-- not handed to a relay yet (and for those sent before this column existed).
ALTER TABLE deliveries ADD COLUMN relay TEXT;
