-- squawk-ignore-file ban-drop-table, ban-drop-column, ban-drop-constraint, ban-drop-function -- rollback drops what 0002 added
-- (ban-drop-*: undoing 0002 means dropping its tables, columns, constraints and
-- functions; sqlrunner counts the rows and values at stake and asks first.)
-- Undoes forward/0002_llm_management.sql. Run rollback/0003 first (sqlrunner
-- does): it drops the concurrently built indexes on the existing tables.
--
-- The three baseline tables end exactly as 0001 made them: only what 0002
-- added is dropped; every row and every pre-existing value stays. DROP COLUMN
-- only marks the column dropped (no rewrite, no scan).
--
-- Lock order: the new tables nobody else references go first (no lock on an
-- existing table). The existing tables come last and in the application's
-- lock order: llm_usage_logs (whose foreign keys to model_servers and
-- model_deployments go with its columns), then model_deployments /
-- installed_models (dropping installed_models locks model_servers: its FK),
-- then model_servers, then llm_providers.
--
-- Idempotent (IF EXISTS everywhere). Data in the new tables and columns is
-- lost: sqlrunner reports it and asks for confirmation before it runs.
--
-- By hand: psql -v ON_ERROR_STOP=1 -f sql/rollback/0002_llm_management.sql
SET lock_timeout = '200ms';
SET statement_timeout = '60s';

BEGIN;

DROP FUNCTION IF EXISTS public.llm_tier_allows(text, text, text);
DROP TABLE IF EXISTS public.audit_log;  -- its trigger and grants go with it
DROP FUNCTION IF EXISTS public.audit_log_refuse_change();
DROP TABLE IF EXISTS public.tier_model_rules;
DROP TABLE IF EXISTS public.model_permissions;
DROP TABLE IF EXISTS public.model_pricing;
DROP TABLE IF EXISTS public.daily_cost_summary;

-- llm_usage_logs (busy): one ALTER TABLE, metadata only.
ALTER TABLE IF EXISTS public.llm_usage_logs
    DROP CONSTRAINT IF EXISTS llm_usage_logs_deployment_id_fkey,
    DROP CONSTRAINT IF EXISTS llm_usage_logs_server_id_fkey,
    DROP CONSTRAINT IF EXISTS llm_usage_logs_latency_ms_check,
    DROP CONSTRAINT IF EXISTS llm_usage_logs_cost_usd_check,
    DROP CONSTRAINT IF EXISTS llm_usage_logs_source_check,
    DROP CONSTRAINT IF EXISTS llm_usage_logs_provider_check,
    DROP COLUMN IF EXISTS latency_ms,
    DROP COLUMN IF EXISTS cost_usd,
    DROP COLUMN IF EXISTS source,
    DROP COLUMN IF EXISTS deployment_id,
    DROP COLUMN IF EXISTS server_id,
    DROP COLUMN IF EXISTS provider;

DROP TABLE IF EXISTS public.model_deployments;
DROP TABLE IF EXISTS public.installed_models;

-- model_servers: one ALTER TABLE, metadata only.
ALTER TABLE IF EXISTS public.model_servers
    DROP CONSTRAINT IF EXISTS model_servers_port_check,
    DROP CONSTRAINT IF EXISTS model_servers_host_check,
    DROP COLUMN IF EXISTS enabled,
    DROP COLUMN IF EXISTS auto_start,
    DROP COLUMN IF EXISTS gpu_id,
    DROP COLUMN IF EXISTS port,
    DROP COLUMN IF EXISTS host,
    DROP COLUMN IF EXISTS location;

-- llm_providers: one ALTER TABLE, metadata only.
ALTER TABLE IF EXISTS public.llm_providers
    DROP CONSTRAINT IF EXISTS llm_providers_metadata_check,
    DROP CONSTRAINT IF EXISTS llm_providers_api_key_encrypted_check,
    DROP COLUMN IF EXISTS metadata,
    DROP COLUMN IF EXISTS api_key_encrypted;

COMMIT;
