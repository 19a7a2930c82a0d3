-- How many of a bounce message's recipient reports each row stands for: a message records at
-- most one row per person it is about (a DSN listing ten thousand recipients under one token is
-- one row with 10000 here). Rows read before this column existed stood for one report each.
ALTER TABLE bounces ADD COLUMN recipients INTEGER NOT NULL DEFAULT 1;
