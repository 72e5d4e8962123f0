-- sqlrunner: batched table=public.llm_usage_logs key=id size=10000 target=500ms derived=provider,cost_usd
-- 0004_usage_provider_cost_backfill: provider and cost_usd for the history of
-- llm_usage_logs, which 0002 added as NULL columns (ops-center's analytics by
-- provider and cost missed every row written before it).
--
-- For each row where they are NULL (a value already there is kept):
--   provider  the llm_providers.provider_type of the row's provider_id;
--   cost_usd  prompt_tokens * input_price_per_token
--             + completion_tokens * output_price_per_token
--             of the model_pricing row in effect at the row's created_at for its
--             (provider, model): the latest effective_from <= created_at whose
--             effective_to is NULL or later. It stays NULL when no price was in
--             effect then, or when the price in effect is not in USD.
-- A row gets a new version only when a value changes: rows the application
-- filled since 0002, and rows that stay NULL for want of a price, are left alone
-- (also when a batch runs again). SET re-reads the row's current values, so a
-- value the application writes while the batch waits for the row is kept.
--
-- Batched: sqlrunner fixes the id range when the file starts and runs this one
-- statement per range [lo, hi) of ids, each batch in its own short transaction
-- together with its progress row (row locks on at most one batch at a time;
-- space freed by earlier batches is reused once autovacuum has been by). It
-- needs no new index: the range is a scan of the primary key (read once to
-- compute, once to update), the provider a lookup in the small llm_providers,
-- the price one probe per row of model_pricing's unique (provider, model,
-- effective_from) index, newest first.
--
-- By hand, one batch (psql variables, half-open range; repeat over the whole id
-- range, then record the file as applied: see MIGRATION_GUIDE.md):
--   psql -X -v ON_ERROR_STOP=1 -v lo=1 -v hi=10001 -f sql/forward/0004_usage_provider_cost_backfill.sql
-- Re-running a batch changes nothing: it only fills NULLs.
UPDATE public.llm_usage_logs AS u
SET provider = coalesce(u.provider, filled.provider),
    cost_usd = coalesce(u.cost_usd, filled.cost_usd)
FROM (
    SELECT l.id,
           coalesce(l.provider, p.provider_type) AS provider,
           coalesce(l.cost_usd, price.cost_usd) AS cost_usd
    FROM public.llm_usage_logs AS l
    JOIN public.llm_providers AS p ON p.id = l.provider_id
    LEFT JOIN LATERAL (
        SELECT CASE WHEN mp.currency = 'USD'
                    THEN l.prompt_tokens * mp.input_price_per_token
                         + l.completion_tokens * mp.output_price_per_token
               END AS cost_usd
        FROM public.model_pricing AS mp
        WHERE mp.provider = coalesce(l.provider, p.provider_type)
          AND mp.model = l.model
          AND mp.effective_from <= l.created_at
          AND (mp.effective_to IS NULL OR mp.effective_to > l.created_at)
        ORDER BY mp.effective_from DESC
        LIMIT 1) AS price ON true
    WHERE l.id >= :lo AND l.id < :hi
      AND (l.provider IS NULL OR l.cost_usd IS NULL)
) AS filled
WHERE u.id >= :lo AND u.id < :hi  -- both sides bounded: never a scan of the whole table
  AND u.id = filled.id
  AND (u.provider, u.cost_usd) IS DISTINCT FROM (filled.provider, filled.cost_usd);
