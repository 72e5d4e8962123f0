-- Verify 0003: the unified LLM management schema is complete and sound.
-- Read-only; every query returns ("check" text, ok boolean, detail text), and
-- detail names what is wrong. sqlrunner runs this file once forward 0003 is
-- applied (after the seeds); `sqlrunner verify` runs it on demand. By hand:
--   psql -v ON_ERROR_STOP=1 -f sql/verify/0003_llm_management.sql

-- The ten tables (three baseline, seven new).
SELECT 'tables: the 10 llm management tables exist' AS "check",
       count(c.oid) = 10 AS ok,
       CASE WHEN count(c.oid) = 10 THEN '10 of 10 present'
            ELSE 'missing: ' || string_agg(t.name, ', ' ORDER BY t.name)
                                FILTER (WHERE c.oid IS NULL)
       END AS detail
FROM unnest(ARRAY[
         'llm_providers', 'model_servers', 'llm_usage_logs',
         'installed_models', 'model_deployments', 'model_permissions',
         'tier_model_rules', 'model_pricing', 'daily_cost_summary', 'audit_log'])
         AS t (name)
LEFT JOIN pg_catalog.pg_class AS c
       ON c.relname = t.name
      AND c.relnamespace = 'public'::regnamespace
      AND c.relkind IN ('r', 'p');

-- The 48 indexes of 0002 (new tables) and 0003 (existing tables), by name,
-- each on its table; then each of them valid and ready (a failed concurrent
-- build leaves an INVALID index behind that IF NOT EXISTS would keep).
WITH expected (table_name, index_name) AS (
    VALUES
        ('installed_models', 'installed_models_pkey'),
        ('installed_models', 'installed_models_server_id_model_name_key'),
        ('installed_models', 'installed_models_model_name_idx'),
        ('installed_models', 'installed_models_status_updated_at_idx'),
        ('installed_models', 'installed_models_server_id_last_used_at_idx'),
        ('installed_models', 'installed_models_digest_idx'),
        ('model_deployments', 'model_deployments_pkey'),
        ('model_deployments', 'model_deployments_deployment_name_key'),
        ('model_deployments', 'model_deployments_server_id_model_name_status_idx'),
        ('model_deployments', 'model_deployments_status_health_status_idx'),
        ('model_deployments', 'model_deployments_health_check_due_idx'),
        ('model_deployments', 'model_deployments_routing_idx'),
        ('model_deployments', 'model_deployments_server_id_gpu_id_idx'),
        ('model_permissions', 'model_permissions_pkey'),
        ('model_permissions', 'model_permissions_subject_provider_model_key'),
        ('model_permissions', 'model_permissions_provider_model_pattern_idx'),
        ('model_permissions', 'model_permissions_expires_at_idx'),
        ('model_permissions', 'model_permissions_granted_by_created_at_idx'),
        ('tier_model_rules', 'tier_model_rules_pkey'),
        ('tier_model_rules', 'tier_model_rules_tier_provider_model_pattern_key'),
        ('tier_model_rules', 'tier_model_rules_provider_model_pattern_idx'),
        ('model_pricing', 'model_pricing_pkey'),
        ('model_pricing', 'model_pricing_provider_model_effective_from_key'),
        ('model_pricing', 'model_pricing_model_idx'),
        ('model_pricing', 'model_pricing_effective_to_idx'),
        ('daily_cost_summary', 'daily_cost_summary_pkey'),
        ('daily_cost_summary', 'daily_cost_summary_day_user_provider_model_key'),
        ('daily_cost_summary', 'daily_cost_summary_user_id_usage_date_idx'),
        ('daily_cost_summary', 'daily_cost_summary_provider_model_usage_date_idx'),
        ('daily_cost_summary', 'daily_cost_summary_organization_id_usage_date_idx'),
        ('audit_log', 'audit_log_pkey'),
        ('audit_log', 'audit_log_occurred_at_brin'),
        ('audit_log', 'audit_log_actor_idx'),
        ('audit_log', 'audit_log_target_idx'),
        ('audit_log', 'audit_log_action_occurred_at_idx'),
        ('audit_log', 'audit_log_request_id_idx'),
        ('audit_log', 'audit_log_details_gin'),
        ('llm_usage_logs', 'llm_usage_logs_server_id_created_at_idx'),
        ('llm_usage_logs', 'llm_usage_logs_deployment_id_created_at_idx'),
        ('llm_usage_logs', 'llm_usage_logs_provider_model_created_at_idx'),
        ('llm_usage_logs', 'llm_usage_logs_source_created_at_idx'),
        ('llm_usage_logs', 'llm_usage_logs_failed_created_at_idx'),
        ('model_servers', 'model_servers_host_port_key'),
        ('model_servers', 'model_servers_enabled_status_last_seen_at_idx'),
        ('model_servers', 'model_servers_location_status_idx'),
        ('model_servers', 'model_servers_gpu_id_idx'),
        ('llm_providers', 'llm_providers_provider_type_is_active_idx'),
        ('llm_providers', 'llm_providers_metadata_gin')
), found AS (
    SELECT e.*, i.indexrelid, i.indisvalid, i.indisready
    FROM expected AS e
    LEFT JOIN pg_catalog.pg_class AS ic
           ON ic.relname = e.index_name
          AND ic.relnamespace = 'public'::regnamespace
          AND ic.relkind = 'i'
    LEFT JOIN pg_catalog.pg_index AS i
           ON i.indexrelid = ic.oid
          AND i.indrelid = to_regclass('public.' || e.table_name)
)
SELECT 'indexes: the 48 llm management indexes exist' AS "check",
       count(indexrelid) = 48 AND count(*) = 48 AS ok,
       CASE WHEN count(indexrelid) = 48 THEN '48 of 48 present'
            ELSE count(indexrelid) || ' of 48 present; missing: '
                 || string_agg(table_name || '.' || index_name, ', ' ORDER BY index_name)
                    FILTER (WHERE indexrelid IS NULL)
       END AS detail
FROM found
UNION ALL
SELECT 'indexes: the 48 llm management indexes are valid and ready',
       count(*) FILTER (WHERE NOT (indisvalid AND indisready)) = 0,
       coalesce('invalid or not ready (drop it, then re-run 0003): '
                || string_agg(index_name, ', ' ORDER BY index_name)
                   FILTER (WHERE NOT (indisvalid AND indisready)),
                count(*) FILTER (WHERE indisvalid AND indisready) || ' present ones all valid')
FROM found;

-- The constraints 0002 added NOT VALID, validated by 0003.
SELECT 'constraints: the 10 NOT VALID constraints of 0002 are validated' AS "check",
       count(*) FILTER (WHERE p.convalidated) = 10 AS ok,
       coalesce('missing or not validated: '
                || string_agg(c.table_name || '.' || c.conname, ', ' ORDER BY c.conname)
                   FILTER (WHERE p.convalidated IS NOT TRUE),
                '10 of 10 validated') AS detail
FROM (VALUES
        ('llm_usage_logs', 'llm_usage_logs_provider_check'),
        ('llm_usage_logs', 'llm_usage_logs_source_check'),
        ('llm_usage_logs', 'llm_usage_logs_cost_usd_check'),
        ('llm_usage_logs', 'llm_usage_logs_latency_ms_check'),
        ('llm_usage_logs', 'llm_usage_logs_server_id_fkey'),
        ('llm_usage_logs', 'llm_usage_logs_deployment_id_fkey'),
        ('model_servers', 'model_servers_host_check'),
        ('model_servers', 'model_servers_port_check'),
        ('llm_providers', 'llm_providers_api_key_encrypted_check'),
        ('llm_providers', 'llm_providers_metadata_check')
     ) AS c (table_name, conname)
LEFT JOIN pg_catalog.pg_constraint AS p
       ON p.conname = c.conname
      AND p.conrelid = to_regclass('public.' || c.table_name);

-- audit_log is append-only: the statement-level BEFORE UPDATE OR DELETE OR
-- TRUNCATE trigger exists and fires ALWAYS (also under
-- session_replication_role = replica). tgtype bits: 1 row, 2 before,
-- 8 delete, 16 update, 32 truncate.
SELECT 'audit_log: append-only trigger present and enabled always' AS "check",
       coalesce(bool_and(t.tgenabled = 'A' AND t.tgtype & 59 = 58), false) AS ok,
       coalesce(string_agg(
           CASE WHEN t.tgenabled = 'A' AND t.tgtype & 59 = 58
                THEN format('trigger %s: statement-level BEFORE UPDATE OR DELETE OR '
                            'TRUNCATE, enabled ALWAYS, function %s', t.tgname, t.tgfoid::regproc)
                ELSE format('trigger %s: enabled=%s (want A), tgtype %s (want %s: '
                            'statement-level BEFORE UPDATE OR DELETE OR TRUNCATE)',
                            t.tgname, t.tgenabled, t.tgtype & 59, 58)
           END, '; '),
           'trigger audit_log_append_only is missing') AS detail
FROM pg_catalog.pg_trigger AS t
WHERE t.tgrelid = to_regclass('public.audit_log')
  AND t.tgname = 'audit_log_append_only';

-- PUBLIC holds no UPDATE, DELETE or TRUNCATE on audit_log, and no role but
-- the owner does (superusers and the owner can always bypass: see the guide).
SELECT 'audit_log: PUBLIC lacks UPDATE, DELETE, TRUNCATE' AS "check",
       to_regclass('public.audit_log') IS NOT NULL
       AND count(a.privilege_type) = 0 AS ok,
       CASE WHEN to_regclass('public.audit_log') IS NULL THEN 'table audit_log is missing'
            WHEN count(a.privilege_type) = 0 THEN 'not granted to PUBLIC'
            ELSE 'PUBLIC holds ' || string_agg(a.privilege_type, ', ')
       END AS detail
FROM pg_catalog.pg_class AS c
LEFT JOIN LATERAL pg_catalog.aclexplode(c.relacl) AS a
       ON a.grantee = 0 AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE')
WHERE c.oid = to_regclass('public.audit_log')
UNION ALL
SELECT 'audit_log: no role but the owner holds UPDATE, DELETE, TRUNCATE',
       count(*) = 0,
       coalesce(string_agg(format('%s holds %s', a.grantee::regrole, a.privilege_type), '; '),
                'none')
FROM pg_catalog.pg_class AS c,
     pg_catalog.aclexplode(c.relacl) AS a
WHERE c.oid = to_regclass('public.audit_log')
  AND a.grantee NOT IN (0, c.relowner)
  AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE');

-- llm_tier_allows(tier, provider, model) exists, STABLE, search_path pinned.
SELECT 'llm_tier_allows: present, STABLE, search_path pinned' AS "check",
       coalesce(bool_and(p.provolatile = 's'
                         AND EXISTS (SELECT FROM unnest(p.proconfig) AS s
                                     WHERE s LIKE 'search\_path=%')), false) AS ok,
       coalesce(string_agg(format('volatility %s (want s), config %s',
                                  p.provolatile, coalesce(p.proconfig::text, 'none')), '; '),
                'function public.llm_tier_allows(text, text, text) is missing') AS detail
FROM pg_catalog.pg_proc AS p
WHERE p.oid = to_regprocedure('public.llm_tier_allows(text, text, text)');

-- The seeded tier rules: 50 over exactly the five tiers. Last, because it
-- reads the table itself: a missing table is an error, reported as a failed check.
SELECT 'tier_model_rules: 50 rules over the 5 tiers' AS "check",
       coalesce(sum(n) = 50 AND array_agg(tier ORDER BY tier)
           = ARRAY['enterprise', 'free', 'professional', 'starter', 'trial'], false) AS ok,
       coalesce(sum(n), 0) || ' rules; '
           || coalesce(string_agg(tier || ' ' || n, ', ' ORDER BY tier), 'no tiers')
           || ' (want 50 over enterprise, free, professional, starter, trial)' AS detail
FROM (SELECT tier, count(*) AS n FROM public.tier_model_rules GROUP BY tier) AS per_tier;
