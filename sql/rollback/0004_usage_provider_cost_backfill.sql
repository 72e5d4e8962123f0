-- Undoes forward/0004_usage_provider_cost_backfill.sql by changing nothing, on
-- purpose: the values it filled are derived data, and keeping them is the safe
-- undo.
--   * They are what 0002's columns mean (the provider type of the row's account,
--     the price in effect times the tokens), true before and after a rollback.
--   * A rollback cannot tell them apart: since 0002 the application writes
--     provider and cost_usd itself, so NULL-ing the columns would erase its data
--     too, and one UPDATE over the whole table is the very load 0004 avoids.
--   * Applying 0004 again only fills NULLs, so forward -> rollback -> forward
--     ends where forward ended.
-- To recompute values (e.g. after a correction of model_pricing): set the
-- affected rows' cost_usd to NULL in batches, roll 0004 back, apply again.
-- Rolling back 0002 drops the columns with their values; sqlrunner counts those
-- as derived data of this backfill (its header says derived=provider,cost_usd).
--
-- By hand: psql -X -v ON_ERROR_STOP=1 -f sql/rollback/0004_usage_provider_cost_backfill.sql
BEGIN;
COMMIT;
