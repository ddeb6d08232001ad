-- Which binaries may run against this schema, so that a rolling deploy can run an older
-- binary beside a newer schema (docs/operations.md, "Rolling deploys").
--
-- Every migration from this one on writes its own row: `min_reader_version` is the oldest
-- binary, named by the newest migration it ships, that still works once this migration is
-- applied. An additive change (a new table, a new nullable column, a new index) keeps the
-- value of the migration before it; a change older code would misread (a dropped or renamed
-- column, a new NOT NULL column without a default, a new meaning of a value) names itself.
-- A binary runs when it ships every applied migration, or when the largest
-- `min_reader_version` of those it does not ship is at most its own newest; a migration
-- without a row here counts as needing a binary that ships it.
--
-- This migration names itself: binaries before it do not read this table and refuse any
-- schema newer than theirs.
CREATE TABLE schema_compat (
    version            INTEGER PRIMARY KEY,
    min_reader_version INTEGER NOT NULL,
    CHECK (min_reader_version BETWEEN 1 AND version)
);
INSERT INTO schema_compat (version, min_reader_version) VALUES (6, 6);
