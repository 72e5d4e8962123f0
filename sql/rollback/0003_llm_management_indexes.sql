-- sqlrunner: no-transaction
-- Undoes forward/0003_llm_management_indexes.sql: drops the indexes it built on
-- the existing tables, CONCURRENTLY (a plain DROP INDEX takes ACCESS EXCLUSIVE
-- on the table and would stall every writer of llm_usage_logs while it waits).
-- The constraints 0003 validated stay as they are: rollback/0002 drops them.
-- Idempotent (IF EXISTS): safe to run again after a crash at any statement.
--
-- By hand: psql -v ON_ERROR_STOP=1 -f sql/rollback/0003_llm_management_indexes.sql
SET statement_timeout = 0;
SET lock_timeout = 0;

DROP INDEX CONCURRENTLY IF EXISTS public.llm_usage_logs_server_id_created_at_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.llm_usage_logs_deployment_id_created_at_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.llm_usage_logs_provider_model_created_at_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.llm_usage_logs_source_created_at_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.llm_usage_logs_failed_created_at_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.model_servers_host_port_key;
DROP INDEX CONCURRENTLY IF EXISTS public.model_servers_enabled_status_last_seen_at_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.model_servers_location_status_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.model_servers_gpu_id_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.llm_providers_provider_type_is_active_idx;
DROP INDEX CONCURRENTLY IF EXISTS public.llm_providers_metadata_gin;
