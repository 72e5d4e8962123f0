-- 0002_llm_management: unified LLM management for ops-center.
--
-- Seven new tables, the access-rule function llm_tier_allows(), an append-only
-- audit_log, and new columns on the three baseline tables. Idempotent: every
-- statement is IF NOT EXISTS / OR REPLACE or guarded, so a re-run is a no-op.
--
-- Lock plan (llm_usage_logs takes an insert every few milliseconds):
--   * Everything on the new tables comes first. The new tables' foreign keys to
--     existing tables are not declared in CREATE TABLE (that would hold a hidden
--     SHARE ROW EXCLUSIVE lock on the existing table from the first statement
--     on); they are added next to that table's ALTER, at the end.
--   * Then one ALTER TABLE per existing table, in the order the application
--     locks them (an insert into llm_usage_logs locks it, then checks its
--     foreign keys): llm_usage_logs, then model_servers, then llm_providers.
--     Each is metadata-only: nullable columns or constant defaults (no
--     rewrite), CHECK / FOREIGN KEY constraints NOT VALID (no scan), so the
--     ACCESS EXCLUSIVE locks are held for milliseconds, until COMMIT.
--   * 0003 (no transaction) builds the indexes on existing tables CONCURRENTLY
--     and VALIDATEs the constraints added here, without blocking writers.
--   There is no ADD CONSTRAINT IF NOT EXISTS: the DO blocks add only the
--   constraints missing from pg_constraint.
--
-- Types: identity keys, timestamptz, numeric money, text + named CHECK for
-- status-like columns, jsonb NOT NULL DEFAULT '{}'. Model patterns are LIKE
-- patterns (% any string, _ any one character, no escape character).
--
-- By hand: psql -v ON_ERROR_STOP=1 -f sql/forward/0002_llm_management.sql
-- (all or nothing; if the lock_timeout trips, nothing changed: run it again).
SET lock_timeout = '200ms';
SET statement_timeout = '60s';

BEGIN;

-- ---------------------------------------------------------------------------
-- installed_models: models pulled onto a local model server.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.installed_models (
    id             bigint      GENERATED ALWAYS AS IDENTITY,
    server_id      bigint      NOT NULL,  -- FK to model_servers: added at the end
    model_name     text        NOT NULL,  -- as the server names it, e.g. 'llama3.1:8b'
    model_family   text,                  -- e.g. 'llama'
    parameter_size text,                  -- e.g. '8B'
    quantization   text,                  -- e.g. 'Q4_K_M'
    size_bytes     bigint,
    digest         text,                  -- content digest of the model blob
    status         text        NOT NULL DEFAULT 'pulling',
    last_error     text,
    metadata       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    installed_at   timestamptz,
    last_used_at   timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    -- one installed model by id (API, admin UI)
    CONSTRAINT installed_models_pkey PRIMARY KEY (id),
    -- is model M on server S; FK target of model_deployments; FK index (model_servers)
    CONSTRAINT installed_models_server_id_model_name_key UNIQUE (server_id, model_name),
    CONSTRAINT installed_models_model_name_check CHECK (model_name <> ''),
    CONSTRAINT installed_models_size_bytes_check CHECK (size_bytes >= 0),
    CONSTRAINT installed_models_status_check CHECK (
        status IN ('pulling', 'ready', 'failed', 'removing')),
    CONSTRAINT installed_models_metadata_check CHECK (jsonb_typeof(metadata) = 'object')
);
COMMENT ON TABLE public.installed_models IS
    'Models present on a local model server (model_servers); one row per server and model.';

-- which servers hold model M (placement and routing)
CREATE INDEX IF NOT EXISTS installed_models_model_name_idx
    ON public.installed_models (model_name);
-- installs stuck in one status since a time (pulling or failed for too long)
CREATE INDEX IF NOT EXISTS installed_models_status_updated_at_idx
    ON public.installed_models (status, updated_at);
-- least recently used models on server S (disk clean-up)
CREATE INDEX IF NOT EXISTS installed_models_server_id_last_used_at_idx
    ON public.installed_models (server_id, last_used_at);
-- servers holding the blob with digest D (dedupe, integrity checks)
CREATE INDEX IF NOT EXISTS installed_models_digest_idx
    ON public.installed_models (digest) WHERE digest IS NOT NULL;

-- ---------------------------------------------------------------------------
-- model_deployments: running instances of an installed model.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.model_deployments (
    id                   bigint      GENERATED ALWAYS AS IDENTITY,
    deployment_name      text        NOT NULL,
    server_id            bigint      NOT NULL,
    model_name           text        NOT NULL,
    status               text        NOT NULL DEFAULT 'pending',
    health_status        text        NOT NULL DEFAULT 'unknown',
    endpoint_url         text,
    -- squawk-ignore prefer-bigint-over-int -- a TCP port (checked 1..65535)
    port                 integer,
    gpu_id               text,
    -- squawk-ignore prefer-bigint-over-int -- context window in tokens (checked > 0)
    context_length       integer,
    config               jsonb       NOT NULL DEFAULT '{}'::jsonb,
    last_health_check_at timestamptz,
    last_error           text,
    started_at           timestamptz,
    stopped_at           timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    -- one deployment by id; FK target of llm_usage_logs.deployment_id
    CONSTRAINT model_deployments_pkey PRIMARY KEY (id),
    -- one deployment by name (ops CLI, agent callbacks)
    CONSTRAINT model_deployments_deployment_name_key UNIQUE (deployment_name),
    CONSTRAINT model_deployments_installed_model_fkey FOREIGN KEY (server_id, model_name)
        REFERENCES public.installed_models (server_id, model_name) ON DELETE CASCADE,
    CONSTRAINT model_deployments_deployment_name_check CHECK (deployment_name <> ''),
    CONSTRAINT model_deployments_status_check CHECK (
        status IN ('pending', 'starting', 'running', 'stopping', 'stopped', 'failed')),
    CONSTRAINT model_deployments_health_status_check CHECK (
        health_status IN ('unknown', 'healthy', 'degraded', 'unhealthy')),
    CONSTRAINT model_deployments_port_check CHECK (port BETWEEN 1 AND 65535),
    CONSTRAINT model_deployments_context_length_check CHECK (context_length > 0),
    CONSTRAINT model_deployments_config_check CHECK (jsonb_typeof(config) = 'object'),
    CONSTRAINT model_deployments_stopped_at_check CHECK (stopped_at >= started_at)
);
COMMENT ON TABLE public.model_deployments IS
    'Running (or starting/stopped) instances of an installed model, with status and health.';

-- deployments of model M on server S; also the FK index (ON DELETE on installed_models)
CREATE INDEX IF NOT EXISTS model_deployments_server_id_model_name_status_idx
    ON public.model_deployments (server_id, model_name, status);
-- deployment status dashboard: counts by status and health
CREATE INDEX IF NOT EXISTS model_deployments_status_health_status_idx
    ON public.model_deployments (status, health_status);
-- health checker: active deployments whose last check is oldest
CREATE INDEX IF NOT EXISTS model_deployments_health_check_due_idx
    ON public.model_deployments (last_health_check_at NULLS FIRST)
    WHERE status IN ('starting', 'running');
-- request routing: healthy running deployments of model M
CREATE INDEX IF NOT EXISTS model_deployments_routing_idx
    ON public.model_deployments (model_name, health_status)
    WHERE status = 'running';
-- GPU placement: what runs on GPU G of server S
CREATE INDEX IF NOT EXISTS model_deployments_server_id_gpu_id_idx
    ON public.model_deployments (server_id, gpu_id);

-- ---------------------------------------------------------------------------
-- model_permissions: per-subject access overrides, optionally expiring.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.model_permissions (
    id            bigint      GENERATED ALWAYS AS IDENTITY,
    subject_type  text        NOT NULL,
    subject_id    text        NOT NULL,  -- user id, organization id or role name
    provider      text        NOT NULL,
    model_pattern text        NOT NULL DEFAULT '%',
    access        text        NOT NULL DEFAULT 'allow',
    granted_by    text,
    reason        text,
    expires_at    timestamptz,           -- NULL: never expires
    metadata      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    -- one grant by id (admin UI edit/revoke)
    CONSTRAINT model_permissions_pkey PRIMARY KEY (id),
    -- access check: grants of subject S for provider P (and the natural key)
    CONSTRAINT model_permissions_subject_provider_model_key
        UNIQUE (subject_type, subject_id, provider, model_pattern),
    CONSTRAINT model_permissions_subject_type_check CHECK (
        subject_type IN ('user', 'organization', 'role')),
    CONSTRAINT model_permissions_subject_id_check CHECK (subject_id <> ''),
    CONSTRAINT model_permissions_provider_check CHECK (provider IN (
        'ollama', 'openrouter', 'groq', 'together', 'cohere',
        'openai', 'anthropic', 'google', 'custom')),
    CONSTRAINT model_permissions_model_pattern_check CHECK (model_pattern <> ''),
    CONSTRAINT model_permissions_access_check CHECK (access IN ('allow', 'deny')),
    CONSTRAINT model_permissions_metadata_check CHECK (jsonb_typeof(metadata) = 'object')
);
COMMENT ON TABLE public.model_permissions IS
    'Access to models per user, organization or role, on top of the tier rules; '
    'rows with expires_at <= now() no longer apply. model_pattern is a LIKE pattern.';

-- admin view: who has access to provider P / model pattern X (and revoke them all)
CREATE INDEX IF NOT EXISTS model_permissions_provider_model_pattern_idx
    ON public.model_permissions (provider, model_pattern);
-- expiry sweeper: grants that expire in a window
CREATE INDEX IF NOT EXISTS model_permissions_expires_at_idx
    ON public.model_permissions (expires_at) WHERE expires_at IS NOT NULL;
-- access review: grants made by admin X, newest first
CREATE INDEX IF NOT EXISTS model_permissions_granted_by_created_at_idx
    ON public.model_permissions (granted_by, created_at);

-- ---------------------------------------------------------------------------
-- tier_model_rules: which subscription tier may use which models (seeded).
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.tier_model_rules (
    id                    bigint        GENERATED ALWAYS AS IDENTITY,
    tier                  text          NOT NULL,
    provider              text          NOT NULL,
    model_pattern         text          NOT NULL,  -- LIKE pattern, see llm_tier_allows()
    effect                text          NOT NULL,
    -- The tier's terms, repeated on each of its rules so they can be queried
    -- (and seeded) with the rules; NULL limit = unlimited.
    tier_price_usd        numeric(10,2) NOT NULL,
    billing_period        text          NOT NULL,
    api_call_limit        bigint,
    api_call_limit_period text,
    note                  text          NOT NULL DEFAULT '',
    created_at            timestamptz   NOT NULL DEFAULT now(),
    updated_at            timestamptz   NOT NULL DEFAULT now(),
    -- one rule by id (admin UI)
    CONSTRAINT tier_model_rules_pkey PRIMARY KEY (id),
    -- llm_tier_allows(): rules of tier T and provider P; seed ON CONFLICT target
    CONSTRAINT tier_model_rules_tier_provider_model_pattern_key
        UNIQUE (tier, provider, model_pattern),
    CONSTRAINT tier_model_rules_tier_check CHECK (
        tier IN ('free', 'trial', 'starter', 'professional', 'enterprise')),
    CONSTRAINT tier_model_rules_provider_check CHECK (provider IN (
        'ollama', 'openrouter', 'groq', 'together', 'cohere',
        'openai', 'anthropic', 'google', 'custom')),
    CONSTRAINT tier_model_rules_model_pattern_check CHECK (model_pattern <> ''),
    CONSTRAINT tier_model_rules_effect_check CHECK (effect IN ('allow', 'deny')),
    CONSTRAINT tier_model_rules_tier_price_usd_check CHECK (tier_price_usd >= 0),
    CONSTRAINT tier_model_rules_billing_period_check CHECK (
        billing_period IN ('week', 'month')),
    CONSTRAINT tier_model_rules_api_call_limit_check CHECK (api_call_limit > 0),
    CONSTRAINT tier_model_rules_api_call_limit_period_check CHECK (
        api_call_limit_period IN ('day', 'month')),
    CONSTRAINT tier_model_rules_limit_has_period_check CHECK (
        (api_call_limit IS NULL) = (api_call_limit_period IS NULL))
);
COMMENT ON TABLE public.tier_model_rules IS
    'Model access per subscription tier, evaluated by llm_tier_allows(); reference data '
    'owned by sql/seed/0001_tier_model_rules.sql. Each row also carries its tier''s price '
    'and API-call limit (NULL = unlimited).';

-- pricing page / upgrade prompt: which tiers have a rule for provider P, pattern X
CREATE INDEX IF NOT EXISTS tier_model_rules_provider_model_pattern_idx
    ON public.tier_model_rules (provider, model_pattern);

-- ---------------------------------------------------------------------------
-- model_pricing: per-token prices per model, with effective dates.
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.model_pricing (
    id                     bigint         GENERATED ALWAYS AS IDENTITY,
    provider               text           NOT NULL,
    model                  text           NOT NULL,
    -- USD per token: 10 decimals resolve $0.0001 per million tokens
    input_price_per_token  numeric(14,10) NOT NULL,
    output_price_per_token numeric(14,10) NOT NULL,
    currency               text           NOT NULL DEFAULT 'USD',
    effective_from         timestamptz    NOT NULL,
    effective_to           timestamptz,  -- NULL: still in effect
    note                   text,
    created_at             timestamptz    NOT NULL DEFAULT now(),
    updated_at             timestamptz    NOT NULL DEFAULT now(),
    -- one price row by id (admin UI)
    CONSTRAINT model_pricing_pkey PRIMARY KEY (id),
    -- cost tracking: price of model M at time T (latest effective_from <= T)
    CONSTRAINT model_pricing_provider_model_effective_from_key
        UNIQUE (provider, model, effective_from),
    CONSTRAINT model_pricing_provider_check CHECK (provider IN (
        'ollama', 'openrouter', 'groq', 'together', 'cohere',
        'openai', 'anthropic', 'google', 'custom')),
    CONSTRAINT model_pricing_model_check CHECK (model <> ''),
    CONSTRAINT model_pricing_prices_check CHECK (
        input_price_per_token >= 0 AND output_price_per_token >= 0),
    CONSTRAINT model_pricing_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT model_pricing_effective_check CHECK (effective_to > effective_from)
);
COMMENT ON TABLE public.model_pricing IS
    'Input/output price per token of each model; the price at time T is the row with the '
    'latest effective_from <= T (and effective_to NULL or > T).';

-- all prices of model M across providers (OpenRouter resells the same model)
CREATE INDEX IF NOT EXISTS model_pricing_model_idx
    ON public.model_pricing (model);
-- price-change job: prices ending in a window
CREATE INDEX IF NOT EXISTS model_pricing_effective_to_idx
    ON public.model_pricing (effective_to) WHERE effective_to IS NOT NULL;

-- ---------------------------------------------------------------------------
-- daily_cost_summary: cost per day, user, provider and model (rolled up from
-- llm_usage_logs by a job; requests without a user roll up under user_id 0).
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.daily_cost_summary (
    id              bigint        GENERATED ALWAYS AS IDENTITY,
    usage_date      date          NOT NULL,  -- UTC day
    user_id         bigint        NOT NULL,
    organization_id bigint,
    provider        text          NOT NULL,
    model           text          NOT NULL,
    request_count   bigint        NOT NULL DEFAULT 0,
    input_tokens    bigint        NOT NULL DEFAULT 0,
    output_tokens   bigint        NOT NULL DEFAULT 0,
    cost_usd        numeric(16,8) NOT NULL DEFAULT 0,
    created_at      timestamptz   NOT NULL DEFAULT now(),
    updated_at      timestamptz   NOT NULL DEFAULT now(),
    -- one summary row by id
    CONSTRAINT daily_cost_summary_pkey PRIMARY KEY (id),
    -- roll-up job upsert target; every cost of day D
    CONSTRAINT daily_cost_summary_day_user_provider_model_key
        UNIQUE (usage_date, user_id, provider, model),
    CONSTRAINT daily_cost_summary_provider_check CHECK (provider IN (
        'ollama', 'openrouter', 'groq', 'together', 'cohere',
        'openai', 'anthropic', 'google', 'custom')),
    CONSTRAINT daily_cost_summary_counts_check CHECK (
        request_count >= 0 AND input_tokens >= 0 AND output_tokens >= 0),
    CONSTRAINT daily_cost_summary_cost_usd_check CHECK (cost_usd >= 0)
);
COMMENT ON TABLE public.daily_cost_summary IS
    'Cost per UTC day, user, provider and model; the roll-up job upserts on '
    '(usage_date, user_id, provider, model).';

-- billing page: one user's spend over a date range
CREATE INDEX IF NOT EXISTS daily_cost_summary_user_id_usage_date_idx
    ON public.daily_cost_summary (user_id, usage_date);
-- cost tracking: spend per provider and model over a date range
CREATE INDEX IF NOT EXISTS daily_cost_summary_provider_model_usage_date_idx
    ON public.daily_cost_summary (provider, model, usage_date);
-- organization invoices: one organization's spend over a date range
CREATE INDEX IF NOT EXISTS daily_cost_summary_organization_id_usage_date_idx
    ON public.daily_cost_summary (organization_id, usage_date)
    WHERE organization_id IS NOT NULL;

-- ---------------------------------------------------------------------------
-- audit_log: immutable audit trail (INSERT only; see the trigger below).
-- ---------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS public.audit_log (
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    occurred_at timestamptz NOT NULL DEFAULT now(),
    actor_type  text        NOT NULL DEFAULT 'user',
    actor_id    text,
    action      text        NOT NULL,  -- dotted verb, e.g. 'model_permission.grant'
    target_type text,                  -- e.g. 'model_permission'
    target_id   text,
    request_id  uuid,
    client_addr inet,
    details     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    -- one audit entry by id (links from alerts)
    CONSTRAINT audit_log_pkey PRIMARY KEY (id),
    CONSTRAINT audit_log_actor_type_check CHECK (actor_type IN ('user', 'service', 'system')),
    CONSTRAINT audit_log_action_check CHECK (action ~ '^[a-z][a-z0-9_]*([.][a-z0-9_]+)*$'),
    CONSTRAINT audit_log_target_type_check CHECK (target_type ~ '^[a-z][a-z0-9_]*$'),
    CONSTRAINT audit_log_details_check CHECK (jsonb_typeof(details) = 'object')
);
COMMENT ON TABLE public.audit_log IS
    'Append-only audit trail: UPDATE, DELETE and TRUNCATE are refused by trigger '
    'audit_log_append_only (ENABLE ALWAYS) and not granted to PUBLIC. Superusers and the '
    'table owner can still disable the trigger.';

-- audit search by time window (BRIN: rows arrive in occurred_at order and never change)
CREATE INDEX IF NOT EXISTS audit_log_occurred_at_brin
    ON public.audit_log USING brin (occurred_at);
-- audit search: what did actor X do, newest first
CREATE INDEX IF NOT EXISTS audit_log_actor_idx
    ON public.audit_log (actor_type, actor_id, occurred_at);
-- audit search: history of object Y
CREATE INDEX IF NOT EXISTS audit_log_target_idx
    ON public.audit_log (target_type, target_id, occurred_at);
-- audit search: every event of action A in a window (e.g. all permission grants)
CREATE INDEX IF NOT EXISTS audit_log_action_occurred_at_idx
    ON public.audit_log (action, occurred_at);
-- audit search: every entry written by one request (correlate with app logs)
CREATE INDEX IF NOT EXISTS audit_log_request_id_idx
    ON public.audit_log (request_id) WHERE request_id IS NOT NULL;
-- audit search by detail content (details @> '{"model": "gpt-4o"}')
CREATE INDEX IF NOT EXISTS audit_log_details_gin
    ON public.audit_log USING gin (details jsonb_path_ops);

-- Append-only, enforced by the database: one statement-level trigger refuses
-- UPDATE, DELETE and TRUNCATE before any row is touched, so zero-row
-- statements, MERGE with UPDATE/DELETE actions and INSERT ... ON CONFLICT DO
-- UPDATE fail too (ON CONFLICT DO NOTHING still works). ENABLE ALWAYS keeps it
-- firing under session_replication_role = replica. No RULEs: they report
-- "UPDATE 0" as success, do not stop TRUNCATE and are skipped on replicas.
CREATE OR REPLACE FUNCTION public.audit_log_refuse_change()
RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $function$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Audit entries are immutable; record a correction as a new entry.';
END
$function$;
COMMENT ON FUNCTION public.audit_log_refuse_change() IS
    'Trigger function of audit_log_append_only: refuses UPDATE, DELETE and TRUNCATE.';

CREATE OR REPLACE TRIGGER audit_log_append_only
    BEFORE UPDATE OR DELETE OR TRUNCATE ON public.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION public.audit_log_refuse_change();
ALTER TABLE public.audit_log ENABLE ALWAYS TRIGGER audit_log_append_only;

REVOKE UPDATE, DELETE, TRUNCATE ON public.audit_log FROM PUBLIC;
-- Roles other than the owner that got UPDATE/DELETE/TRUNCATE anyway (e.g. the
-- application role through ALTER DEFAULT PRIVILEGES) lose them too.
DO $migration$
DECLARE
    holder text;
BEGIN
    FOR holder IN
        SELECT DISTINCT a.grantee::regrole::text
        FROM pg_catalog.pg_class AS c, pg_catalog.aclexplode(c.relacl) AS a
        WHERE c.oid = 'public.audit_log'::regclass
          AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE')
          AND a.grantee NOT IN (0, c.relowner)
    LOOP
        EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON public.audit_log FROM %s', holder);
    END LOOP;
END
$migration$;

-- ---------------------------------------------------------------------------
-- llm_tier_allows(tier, provider, model): may this tier use this model?
-- ---------------------------------------------------------------------------
CREATE OR REPLACE FUNCTION public.llm_tier_allows(tier text, provider text, model text)
RETURNS boolean
LANGUAGE sql
STABLE
PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $function$
    SELECT coalesce((
        SELECT r.effect = 'allow'
        FROM public.tier_model_rules AS r
        WHERE r.tier = llm_tier_allows.tier
          AND r.provider = llm_tier_allows.provider
          AND llm_tier_allows.model LIKE r.model_pattern ESCAPE ''
        ORDER BY
            -- 1. an exact pattern (no % or _) beats every wildcard pattern
            (translate(r.model_pattern, '%_', '') = r.model_pattern) DESC,
            -- 2. then the pattern with more literal characters
            length(translate(r.model_pattern, '%_', '')) DESC,
            -- 3. then deny before allow
            (r.effect = 'deny') DESC
        LIMIT 1
    ), false)
$function$;
COMMENT ON FUNCTION public.llm_tier_allows(text, text, text) IS
    'true when subscription tier `tier` may use `model` of `provider`, per tier_model_rules. '
    'Deny by default: no matching rule, an unknown tier or provider, or a NULL argument '
    'gives false. Matching: rules of exactly this tier and provider (lower-case, compared '
    'as is) whose model_pattern matches the model with LIKE, without escape character: '
    '% is any string, _ any one character, everything else literal and case-sensitive; '
    'OpenRouter free models are matched by ''%:free''. Precedence, the first decides: '
    '(1) an exact pattern (no % or _) beats every wildcard pattern; (2) the pattern with '
    'more literal (non-wildcard) characters wins; (3) on a tie, deny wins over allow. '
    'The winning rule''s effect (allow/deny) is the answer. STABLE; search_path pinned.';

-- ---------------------------------------------------------------------------
-- Existing tables, last, in the application's lock order.
-- ---------------------------------------------------------------------------

-- llm_usage_logs (busy): one ALTER TABLE, metadata only. New columns:
--   provider       lower-case provider name, denormalised for analytics
--   server_id      model server that answered (local models); FK, no default
--   deployment_id  model deployment that answered; FK, no default
--   source         what sent the request: api, web, agent, batch, internal
--   cost_usd       cost of the request in USD (NULL: not priced yet)
--   latency_ms     end-to-end latency in milliseconds
-- All nullable without default (existing rows have no such facts), so no
-- rewrite and no scan; CHECKs and FKs NOT VALID, validated in 0003.
DO $migration$
DECLARE
    clauses text[] := ARRAY[
        'ADD COLUMN IF NOT EXISTS provider text',
        'ADD COLUMN IF NOT EXISTS server_id bigint',
        'ADD COLUMN IF NOT EXISTS deployment_id bigint',
        'ADD COLUMN IF NOT EXISTS source text',
        'ADD COLUMN IF NOT EXISTS cost_usd numeric(14,8)',
        'ADD COLUMN IF NOT EXISTS latency_ms integer'];
    wanted record;
BEGIN
    FOR wanted IN
        SELECT c.conname, c.definition
        FROM (VALUES
            ('llm_usage_logs_provider_check',
             $$CHECK (provider IN ('ollama', 'openrouter', 'groq', 'together', 'cohere',
                                   'openai', 'anthropic', 'google', 'custom')) NOT VALID$$),
            ('llm_usage_logs_source_check',
             $$CHECK (source IN ('api', 'web', 'agent', 'batch', 'internal')) NOT VALID$$),
            ('llm_usage_logs_cost_usd_check', $$CHECK (cost_usd >= 0) NOT VALID$$),
            ('llm_usage_logs_latency_ms_check', $$CHECK (latency_ms >= 0) NOT VALID$$),
            ('llm_usage_logs_server_id_fkey',
             $$FOREIGN KEY (server_id) REFERENCES public.model_servers (id)
               ON DELETE SET NULL NOT VALID$$),
            ('llm_usage_logs_deployment_id_fkey',
             $$FOREIGN KEY (deployment_id) REFERENCES public.model_deployments (id)
               ON DELETE SET NULL NOT VALID$$)
        ) AS c (conname, definition)
        WHERE NOT EXISTS (
            SELECT FROM pg_catalog.pg_constraint AS p
            WHERE p.conrelid = 'public.llm_usage_logs'::regclass AND p.conname = c.conname)
    LOOP
        clauses := clauses || format('ADD CONSTRAINT %I %s', wanted.conname, wanted.definition);
    END LOOP;
    EXECUTE 'ALTER TABLE public.llm_usage_logs ' || array_to_string(clauses, ', ');
END
$migration$;

-- model_servers: one ALTER TABLE, metadata only. New columns:
--   location   where the server runs (site/rack), free text
--   host, port where its agent listens
--   gpu_id     GPU(s) it uses, e.g. 'GPU-3f2a…' or '0,1'
--   auto_start start it with ops-center (default false)
--   enabled    take it out of rotation without deleting it (default true)
-- Then the foreign key installed_models -> model_servers (its lock on
-- model_servers is already held at that point).
DO $migration$
DECLARE
    clauses text[] := ARRAY[
        'ADD COLUMN IF NOT EXISTS location text',
        'ADD COLUMN IF NOT EXISTS host text',
        'ADD COLUMN IF NOT EXISTS port integer',
        'ADD COLUMN IF NOT EXISTS gpu_id text',
        'ADD COLUMN IF NOT EXISTS auto_start boolean NOT NULL DEFAULT false',
        'ADD COLUMN IF NOT EXISTS enabled boolean NOT NULL DEFAULT true'];
    wanted record;
BEGIN
    FOR wanted IN
        SELECT c.conname, c.definition
        FROM (VALUES
            ('model_servers_host_check', $$CHECK (host <> '') NOT VALID$$),
            ('model_servers_port_check', $$CHECK (port BETWEEN 1 AND 65535) NOT VALID$$)
        ) AS c (conname, definition)
        WHERE NOT EXISTS (
            SELECT FROM pg_catalog.pg_constraint AS p
            WHERE p.conrelid = 'public.model_servers'::regclass AND p.conname = c.conname)
    LOOP
        clauses := clauses || format('ADD CONSTRAINT %I %s', wanted.conname, wanted.definition);
    END LOOP;
    EXECUTE 'ALTER TABLE public.model_servers ' || array_to_string(clauses, ', ');

    IF NOT EXISTS (
        SELECT FROM pg_catalog.pg_constraint
        WHERE conrelid = 'public.installed_models'::regclass
          AND conname = 'installed_models_server_id_fkey')
    THEN
        ALTER TABLE public.installed_models
            ADD CONSTRAINT installed_models_server_id_fkey FOREIGN KEY (server_id)
            REFERENCES public.model_servers (id) ON DELETE CASCADE;
    END IF;
END
$migration$;

-- llm_providers: one ALTER TABLE, metadata only. New columns:
--   api_key_encrypted  the provider API key, encrypted by the application
--                      (never plaintext; NULL for keyless providers such as ollama)
--   metadata           free-form settings (region, org id, rate limits), '{}' default
DO $migration$
DECLARE
    clauses text[] := ARRAY[
        'ADD COLUMN IF NOT EXISTS api_key_encrypted bytea',
        $$ADD COLUMN IF NOT EXISTS metadata jsonb NOT NULL DEFAULT '{}'::jsonb$$];
    wanted record;
BEGIN
    FOR wanted IN
        SELECT c.conname, c.definition
        FROM (VALUES
            ('llm_providers_api_key_encrypted_check',
             $$CHECK (octet_length(api_key_encrypted) > 0) NOT VALID$$),
            ('llm_providers_metadata_check',
             $$CHECK (jsonb_typeof(metadata) = 'object') NOT VALID$$)
        ) AS c (conname, definition)
        WHERE NOT EXISTS (
            SELECT FROM pg_catalog.pg_constraint AS p
            WHERE p.conrelid = 'public.llm_providers'::regclass AND p.conname = c.conname)
    LOOP
        clauses := clauses || format('ADD CONSTRAINT %I %s', wanted.conname, wanted.definition);
    END LOOP;
    EXECUTE 'ALTER TABLE public.llm_providers ' || array_to_string(clauses, ', ');
END
$migration$;

COMMIT;
