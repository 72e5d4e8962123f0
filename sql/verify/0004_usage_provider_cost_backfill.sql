-- Verify 0004: the history of llm_usage_logs has its provider and cost.
-- Read-only; every query returns ("check" text, ok boolean, detail text). Runs
-- once forward 0004 is applied (a backfill stopped by its budget is not applied
-- yet, so these wait for it), and on `sqlrunner verify`. Rows the application
-- writes are held to the same rule: a failure there means new rows miss their
-- provider or cost too, which ops-center's analytics would silently drop.
-- By hand: psql -X -v ON_ERROR_STOP=1 -f sql/verify/0004_usage_provider_cost_backfill.sql

-- Served by the (provider, model, created_at) index of 0003: IS NULL is an index
-- condition, so this reads only the rows it reports.
SELECT 'llm_usage_logs: every row has its provider' AS "check",
       count(*) = 0 AS ok,
       CASE WHEN count(*) = 0 THEN 'no row lacks provider'
            ELSE count(*) || ' row(s) lack provider, ids ' || min(u.id) || '..' || max(u.id)
                 || ' (finish 0004: sqlrunner apply)'
       END AS detail
FROM public.llm_usage_logs AS u
WHERE u.provider IS NULL;

-- One pass over the rows without a cost (a sequential scan: about a second per
-- few million rows, with ACCESS SHARE only), each probing the price in effect
-- the way the backfill does (latest effective_from <= created_at, still in
-- effect then); only a USD price makes a cost.
SELECT 'llm_usage_logs: cost_usd is NULL only where no USD price was in effect' AS "check",
       count(*) = 0 AS ok,
       CASE WHEN count(*) = 0 THEN 'no unpriced row had a USD price in effect'
            ELSE count(*) || ' row(s) without cost_usd had a USD price in effect, ids '
                 || min(u.id) || '..' || max(u.id)
       END AS detail
FROM public.llm_usage_logs AS u
CROSS JOIN LATERAL (
    SELECT mp.currency
    FROM public.model_pricing AS mp
    WHERE mp.provider = u.provider
      AND mp.model = u.model
      AND mp.effective_from <= u.created_at
      AND (mp.effective_to IS NULL OR mp.effective_to > u.created_at)
    ORDER BY mp.effective_from DESC
    LIMIT 1) AS price
WHERE u.cost_usd IS NULL
  AND price.currency = 'USD';
