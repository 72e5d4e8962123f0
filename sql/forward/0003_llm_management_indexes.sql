-- sqlrunner: no-transaction
-- 0003_llm_management_indexes: the slow half of 0002, without blocking writers.
--
-- Runs outside a transaction, one statement at a time (autocommit):
--   * CREATE INDEX CONCURRENTLY on the existing tables: SHARE UPDATE EXCLUSIVE,
--     which does not conflict with INSERT/UPDATE/DELETE (a plain build would
--     block every writer of llm_usage_logs for the whole build);
--   * VALIDATE CONSTRAINT for the CHECK/FOREIGN KEY constraints 0002 added
--     NOT VALID: a scan under SHARE UPDATE EXCLUSIVE, again no writer blocked.
-- Every statement is idempotent, so after a crash the file can run again from
-- the top. Caveat for hand runs: a concurrent build that failed leaves an
-- INVALID index that IF NOT EXISTS then silently keeps; sqlrunner drops such a
-- leftover before re-running the build, by hand drop it first
-- (DROP INDEX CONCURRENTLY IF EXISTS name). The verify file reports it.
--
-- By hand: psql -v ON_ERROR_STOP=1 -f sql/forward/0003_llm_management_indexes.sql
-- No statement_timeout: a build over tens of millions of rows takes minutes
-- and blocks no writer. The lock waits (for older transactions to finish)
-- block no writer either, so they may take as long as they need.
SET statement_timeout = 0;
SET lock_timeout = 0;
-- One core per build: parallel workers would finish sooner but take every core
-- from the application's writers (bench/busy_table.py measures the difference).
SET max_parallel_maintenance_workers = 0;

-- ---------------------------------------------------------------- llm_usage_logs
-- usage per model server over time; also the FK index (ON DELETE SET NULL on model_servers)
CREATE INDEX CONCURRENTLY IF NOT EXISTS llm_usage_logs_server_id_created_at_idx
    ON public.llm_usage_logs (server_id, created_at);
-- usage per deployment over time; also the FK index (ON DELETE SET NULL on model_deployments)
CREATE INDEX CONCURRENTLY IF NOT EXISTS llm_usage_logs_deployment_id_created_at_idx
    ON public.llm_usage_logs (deployment_id, created_at);
-- usage analytics and cost tracking per provider and model over a time window
CREATE INDEX CONCURRENTLY IF NOT EXISTS llm_usage_logs_provider_model_created_at_idx
    ON public.llm_usage_logs (provider, model, created_at);
-- usage analytics per source (api, web, agent, batch) over a time window
CREATE INDEX CONCURRENTLY IF NOT EXISTS llm_usage_logs_source_created_at_idx
    ON public.llm_usage_logs (source, created_at);
-- provider health: recent failed requests (errors, timeouts); small partial index
CREATE INDEX CONCURRENTLY IF NOT EXISTS llm_usage_logs_failed_created_at_idx
    ON public.llm_usage_logs (status, created_at) WHERE status <> 'success';

-- ----------------------------------------------------------------- model_servers
-- agent registration / heartbeat: the server listening on host:port (at most one)
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS model_servers_host_port_key
    ON public.model_servers (host, port);
-- server health checker: enabled servers by status, stalest heartbeat first
CREATE INDEX CONCURRENTLY IF NOT EXISTS model_servers_enabled_status_last_seen_at_idx
    ON public.model_servers (enabled, status, last_seen_at);
-- placement: servers in location L by status
CREATE INDEX CONCURRENTLY IF NOT EXISTS model_servers_location_status_idx
    ON public.model_servers (location, status);
-- GPU inventory: the server(s) using GPU G
CREATE INDEX CONCURRENTLY IF NOT EXISTS model_servers_gpu_id_idx
    ON public.model_servers (gpu_id) WHERE gpu_id IS NOT NULL;

-- ----------------------------------------------------------------- llm_providers
-- provider health / routing: active accounts of provider type P
CREATE INDEX CONCURRENTLY IF NOT EXISTS llm_providers_provider_type_is_active_idx
    ON public.llm_providers (provider_type, is_active);
-- providers by metadata (metadata @> '{"region": "eu"}')
CREATE INDEX CONCURRENTLY IF NOT EXISTS llm_providers_metadata_gin
    ON public.llm_providers USING gin (metadata jsonb_path_ops);

-- ------------------------------------------------ constraints 0002 added NOT VALID
-- squawk-ignore prefer-robust-stmts -- VALIDATE of a valid constraint is a no-op: re-runnable
ALTER TABLE public.llm_usage_logs VALIDATE CONSTRAINT llm_usage_logs_provider_check;
-- squawk-ignore prefer-robust-stmts -- VALIDATE of a valid constraint is a no-op: re-runnable
ALTER TABLE public.llm_usage_logs VALIDATE CONSTRAINT llm_usage_logs_source_check;
-- squawk-ignore prefer-robust-stmts -- VALIDATE of a valid constraint is a no-op: re-runnable
ALTER TABLE public.llm_usage_logs VALIDATE CONSTRAINT llm_usage_logs_cost_usd_check;
-- squawk-ignore prefer-robust-stmts -- VALIDATE of a valid constraint is a no-op: re-runnable
ALTER TABLE public.llm_usage_logs VALIDATE CONSTRAINT llm_usage_logs_latency_ms_check;
-- squawk-ignore prefer-robust-stmts -- VALIDATE of a valid constraint is a no-op: re-runnable
ALTER TABLE public.llm_usage_logs VALIDATE CONSTRAINT llm_usage_logs_server_id_fkey;
-- squawk-ignore prefer-robust-stmts -- VALIDATE of a valid constraint is a no-op: re-runnable
ALTER TABLE public.llm_usage_logs VALIDATE CONSTRAINT llm_usage_logs_deployment_id_fkey;
-- squawk-ignore prefer-robust-stmts -- VALIDATE of a valid constraint is a no-op: re-runnable
ALTER TABLE public.model_servers VALIDATE CONSTRAINT model_servers_host_check;
-- squawk-ignore prefer-robust-stmts -- VALIDATE of a valid constraint is a no-op: re-runnable
ALTER TABLE public.model_servers VALIDATE CONSTRAINT model_servers_port_check;
-- squawk-ignore prefer-robust-stmts -- VALIDATE of a valid constraint is a no-op: re-runnable
ALTER TABLE public.llm_providers VALIDATE CONSTRAINT llm_providers_api_key_encrypted_check;
-- squawk-ignore prefer-robust-stmts -- VALIDATE of a valid constraint is a no-op: re-runnable
ALTER TABLE public.llm_providers VALIDATE CONSTRAINT llm_providers_metadata_check;
