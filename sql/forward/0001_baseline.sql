-- 0001_baseline: the three tables ops-center already has in production.
--
-- On production this file changes nothing and takes no lock on the busy
-- llm_usage_logs: CREATE TABLE IF NOT EXISTS only looks at the catalog, and the
-- baseline indexes are built only when missing (a plain CREATE INDEX IF NOT
-- EXISTS would take a SHARE lock on the table, blocking every writer until
-- COMMIT, even when the index already exists). On a fresh database it builds the
-- pre-existing design, so 0002 has something to change.
--
-- Irreversible by design: there is no rollback/0001_baseline.sql, and
-- `sqlrunner rollback` stops in front of this file.
--
-- By hand: psql -v ON_ERROR_STOP=1 -f sql/forward/0001_baseline.sql
SET lock_timeout = '200ms';
SET statement_timeout = '60s';

BEGIN;

-- LLM API accounts ops-center calls: one row per configured provider account.
CREATE TABLE IF NOT EXISTS public.llm_providers (
    id            bigint      GENERATED ALWAYS AS IDENTITY,
    name          text        NOT NULL,
    provider_type text        NOT NULL,
    base_url      text,
    is_active     boolean     NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT llm_providers_pkey PRIMARY KEY (id),
    CONSTRAINT llm_providers_name_key UNIQUE (name),
    CONSTRAINT llm_providers_name_check CHECK (name <> ''),
    CONSTRAINT llm_providers_provider_type_check CHECK (provider_type IN (
        'ollama', 'openrouter', 'groq', 'together', 'cohere',
        'openai', 'anthropic', 'google', 'custom'))
);

-- Self-hosted inference servers (Ollama, vLLM, llama.cpp, TGI) ops-center routes to.
CREATE TABLE IF NOT EXISTS public.model_servers (
    id           bigint      GENERATED ALWAYS AS IDENTITY,
    name         text        NOT NULL,
    server_type  text        NOT NULL DEFAULT 'ollama',
    base_url     text        NOT NULL,
    status       text        NOT NULL DEFAULT 'unknown',
    last_seen_at timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT model_servers_pkey PRIMARY KEY (id),
    CONSTRAINT model_servers_name_key UNIQUE (name),
    CONSTRAINT model_servers_name_check CHECK (name <> ''),
    CONSTRAINT model_servers_server_type_check CHECK (
        server_type IN ('ollama', 'vllm', 'llamacpp', 'tgi')),
    CONSTRAINT model_servers_status_check CHECK (
        status IN ('unknown', 'online', 'degraded', 'offline'))
);

-- One row per LLM request: the busy table (tens of millions of rows, an insert
-- every few milliseconds).
CREATE TABLE IF NOT EXISTS public.llm_usage_logs (
    id                bigint      GENERATED ALWAYS AS IDENTITY,
    provider_id       bigint      NOT NULL,
    user_id           bigint,
    model             text        NOT NULL,
    request_type      text        NOT NULL DEFAULT 'chat',
    -- squawk-ignore prefer-bigint-over-int -- tokens of one request stay far below 2^31
    prompt_tokens     integer     NOT NULL DEFAULT 0,
    -- squawk-ignore prefer-bigint-over-int -- same: int4 saves 8 bytes a row here
    completion_tokens integer     NOT NULL DEFAULT 0,
    status            text        NOT NULL DEFAULT 'success',
    error_message     text,
    created_at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT llm_usage_logs_pkey PRIMARY KEY (id),
    CONSTRAINT llm_usage_logs_provider_id_fkey FOREIGN KEY (provider_id)
        REFERENCES public.llm_providers (id) ON DELETE RESTRICT,
    CONSTRAINT llm_usage_logs_request_type_check CHECK (
        request_type IN ('chat', 'completion', 'embedding')),
    CONSTRAINT llm_usage_logs_tokens_check CHECK (
        prompt_tokens >= 0 AND completion_tokens >= 0),
    CONSTRAINT llm_usage_logs_status_check CHECK (
        status IN ('success', 'error', 'timeout'))
);

-- The baseline indexes of llm_usage_logs, built only when missing. A missing
-- index on a populated table is refused: a plain build there would block
-- every writer for minutes; build it with CREATE INDEX CONCURRENTLY first.
DO $baseline$
DECLARE
    missing text[] := ARRAY(
        SELECT index_name
        FROM unnest(ARRAY[
            'llm_usage_logs_provider_id_created_at_idx',
            'llm_usage_logs_user_id_created_at_idx',
            'llm_usage_logs_created_at_idx']) AS index_name
        WHERE to_regclass('public.' || index_name) IS NULL);
BEGIN
    IF cardinality(missing) = 0 THEN
        RETURN;  -- production: everything is there; no lock taken
    END IF;
    IF EXISTS (SELECT FROM public.llm_usage_logs LIMIT 1) THEN
        RAISE EXCEPTION 'llm_usage_logs holds rows but lacks baseline index(es) %', missing
            USING HINT = 'Build them with CREATE INDEX CONCURRENTLY (definitions in this '
                         'file), then run it again.';
    END IF;
    -- usage of one provider over time; also the FK index (ON DELETE on llm_providers)
    CREATE INDEX IF NOT EXISTS llm_usage_logs_provider_id_created_at_idx
        ON public.llm_usage_logs (provider_id, created_at);
    -- one user's usage over time
    CREATE INDEX IF NOT EXISTS llm_usage_logs_user_id_created_at_idx
        ON public.llm_usage_logs (user_id, created_at);
    -- all usage in a time window (daily roll-ups)
    CREATE INDEX IF NOT EXISTS llm_usage_logs_created_at_idx
        ON public.llm_usage_logs (created_at);
END
$baseline$;

COMMIT;
