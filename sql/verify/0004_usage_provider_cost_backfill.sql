-- Verify 0004: the history of llm_usage_logs has its provider and cost.
-- Read-only; every query returns ("check" text, ok boolean, detail text). Runs
-- once forward 0004 is applied (a backfill stopped by its budget is not applied
-- yet, so these wait for it), and on `sqlrunner verify`. Rows the application
-- writes are held to the same rule: a failure there means new rows miss their
-- provider or cost too, which ops-center's analytics would silently drop.
-- By hand: psql -X -v ON_ERROR_STOP=1 -f sql/verify/0004_usage_provider_cost_backfill.sql

-- Served by the (provider, model, created_at) index of 0003: IS NULL is an index
-- condition, so this reads only the rows it reports. Rows written without a
-- provider after the backfill fixed its id range (an application version from
-- before 0002 still running) fail it too: the detail gives the hand-run batch
-- that fills them.
SELECT 'llm_usage_logs: every row has its provider' AS "check",
       count(*) = 0 AS ok,
       CASE WHEN count(*) = 0 THEN 'no row lacks provider'
            ELSE count(*) || ' row(s) lack provider, ids ' || min(u.id) || '..' || max(u.id)
                 || ': fill them with one batch by hand, psql -v lo=' || min(u.id)
                 || ' -v hi=' || max(u.id) + 1
                 || ' -f sql/forward/0004_usage_provider_cost_backfill.sql'
       END AS detail
FROM public.llm_usage_logs AS u
WHERE u.provider IS NULL;

-- Every row has its provider once the backfill visited it, so the check above
-- proves the backfill complete. The costs are spot-checked, at a bounded cost
-- whatever the table's size: the rows without a cost among the 10,000 oldest and
-- the 10,000 newest ids (the first batches, and the application's latest rows),
-- each probing the price in effect the way the backfill does (latest
-- effective_from <= created_at, still in effect then; only USD makes a cost).
-- A whole-table pass would read every row: seconds per million.
WITH ends AS MATERIALIZED (
    SELECT (SELECT min(id) FROM public.llm_usage_logs) AS first_id,
           (SELECT max(id) FROM public.llm_usage_logs) AS last_id
), unpriced AS (
    -- two-sided ranges: the planner then reads each end through the primary key
    SELECT u.id, u.provider, u.model, u.created_at
    FROM public.llm_usage_logs AS u
    WHERE u.id BETWEEN (SELECT first_id FROM ends) AND (SELECT first_id + 9999 FROM ends)
      AND u.cost_usd IS NULL
    UNION
    SELECT u.id, u.provider, u.model, u.created_at
    FROM public.llm_usage_logs AS u
    WHERE u.id BETWEEN (SELECT last_id - 9999 FROM ends) AND (SELECT last_id FROM ends)
      AND u.cost_usd IS NULL
)
SELECT 'llm_usage_logs: cost_usd is NULL only where no USD price was in effect' AS "check",
       count(*) = 0 AS ok,
       CASE WHEN count(*) = 0
            THEN 'no unpriced row had a USD price in effect (10,000 oldest and newest ids)'
            ELSE count(*) || ' row(s) without cost_usd had a USD price in effect, ids '
                 || min(u.id) || '..' || max(u.id)
       END AS detail
FROM unpriced AS u
CROSS JOIN LATERAL (
    SELECT mp.currency
    FROM public.model_pricing AS mp
    WHERE mp.provider = u.provider
      AND mp.model = u.model
      AND mp.effective_from <= u.created_at
      AND (mp.effective_to IS NULL OR mp.effective_to > u.created_at)
    ORDER BY mp.effective_from DESC
    LIMIT 1) AS price
WHERE price.currency = 'USD';
