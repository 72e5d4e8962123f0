-- Seed 0001_tier_model_rules: which subscription tier may use which models.
--
-- The file is the source of truth for tier_model_rules: 50 rules over the five
-- tiers free, trial, starter, professional and enterprise, evaluated by
-- llm_tier_allows(tier, provider, model) (deny by default; an exact pattern beats
-- a wildcard pattern, then more literal characters win, then deny wins a tie).
-- Re-running it changes no row; an edited rule (effect, price, limit, note)
-- reaches existing databases through ON CONFLICT ... DO UPDATE ... WHERE
-- IS DISTINCT FROM. A rule removed from this file, or whose pattern changed,
-- stays in existing databases: delete it in a forward migration (verify's
-- "50 tier rules" check reports the stray row).
--
-- Terms (columns of every rule of the tier, queryable):
--   tier          price       billing  API calls
--   free          $0.00       month    100 / day   (legacy, same models as trial)
--   trial         $1.00       week     100 / day
--   starter       $19.00      month    1,000 / month
--   professional  $49.00      month    10,000 / month
--   enterprise    $99.00      month    unlimited (NULL)
--
-- Premium models: OpenAI GPT-4 family (gpt-4*, except gpt-4o-mini), Anthropic
-- Claude (except Haiku), Google Gemini Pro; Professional and Enterprise only.
-- Mid-tier cloud models (Starter and up): the small, fast, low-price models of
-- the commercial APIs, called directly or through OpenRouter: OpenAI
-- gpt-4o-mini, Anthropic Claude Haiku, Google Gemini Flash.
-- OpenRouter free models are the ids ending in ':free' (pattern '%:free').
-- OpenAI o-series reasoning models, other OpenRouter paid routes and custom
-- providers: Enterprise only (denied by default below it).
--
-- By hand: psql -v ON_ERROR_STOP=1 -f sql/seed/0001_tier_model_rules.sql
SET lock_timeout = '200ms';
SET statement_timeout = '60s';

BEGIN;

INSERT INTO public.tier_model_rules AS r
    (tier, provider, model_pattern, effect,
     tier_price_usd, billing_period, api_call_limit, api_call_limit_period, note)
VALUES
    -- Free (legacy, $0): same models and limits as Trial.
    ('free', 'ollama', '%', 'allow', 0.00, 'month', 100, 'day',
     'local models on our own model servers'),
    ('free', 'openrouter', '%:free', 'allow', 0.00, 'month', 100, 'day',
     'OpenRouter free models (ids end in :free)'),
    ('free', 'openrouter', 'openai/gpt-4%', 'deny', 0.00, 'month', 100, 'day',
     'premium: GPT-4 family, even a :free variant'),
    ('free', 'openrouter', 'anthropic/claude-%', 'deny', 0.00, 'month', 100, 'day',
     'premium: Claude, even a :free variant'),
    ('free', 'openrouter', 'google/gemini-%pro%', 'deny', 0.00, 'month', 100, 'day',
     'premium: Gemini Pro, even a :free variant'),
    ('free', 'groq', '%', 'allow', 0.00, 'month', 100, 'day',
     'Groq free tier (open-weight models)'),
    -- Trial ($1/week, 100 API calls/day): Ollama local models, OpenRouter free
    -- models, Groq free tier; no premium model, not even a free variant.
    ('trial', 'ollama', '%', 'allow', 1.00, 'week', 100, 'day',
     'local models on our own model servers'),
    ('trial', 'openrouter', '%:free', 'allow', 1.00, 'week', 100, 'day',
     'OpenRouter free models (ids end in :free)'),
    ('trial', 'openrouter', 'openai/gpt-4%', 'deny', 1.00, 'week', 100, 'day',
     'premium: GPT-4 family, even a :free variant'),
    ('trial', 'openrouter', 'anthropic/claude-%', 'deny', 1.00, 'week', 100, 'day',
     'premium: Claude, even a :free variant'),
    ('trial', 'openrouter', 'google/gemini-%pro%', 'deny', 1.00, 'week', 100, 'day',
     'premium: Gemini Pro, even a :free variant'),
    ('trial', 'groq', '%', 'allow', 1.00, 'week', 100, 'day',
     'Groq free tier (open-weight models)'),
    -- Starter ($19/month, 1,000 API calls/month): Trial plus the mid-tier cloud
    -- models, Together AI and Cohere; no premium model.
    ('starter', 'ollama', '%', 'allow', 19.00, 'month', 1000, 'month',
     'local models on our own model servers'),
    ('starter', 'openrouter', '%:free', 'allow', 19.00, 'month', 1000, 'month',
     'OpenRouter free models (ids end in :free)'),
    ('starter', 'openrouter', 'openai/gpt-4%', 'deny', 19.00, 'month', 1000, 'month',
     'premium: GPT-4 family (mini is allowed below)'),
    ('starter', 'openrouter', 'openai/gpt-4o-mini%', 'allow', 19.00, 'month', 1000, 'month',
     'mid-tier: GPT-4o mini'),
    ('starter', 'openrouter', 'anthropic/claude-%', 'deny', 19.00, 'month', 1000, 'month',
     'premium: Claude (Haiku is allowed below)'),
    ('starter', 'openrouter', 'anthropic/claude-%haiku%', 'allow', 19.00, 'month', 1000, 'month',
     'mid-tier: Claude Haiku'),
    ('starter', 'openrouter', 'google/gemini-%pro%', 'deny', 19.00, 'month', 1000, 'month',
     'premium: Gemini Pro'),
    ('starter', 'openrouter', 'google/gemini-%flash%', 'allow', 19.00, 'month', 1000, 'month',
     'mid-tier: Gemini Flash'),
    ('starter', 'groq', '%', 'allow', 19.00, 'month', 1000, 'month',
     'Groq (open-weight models)'),
    ('starter', 'together', '%', 'allow', 19.00, 'month', 1000, 'month',
     'Together AI (open-weight models)'),
    ('starter', 'cohere', '%', 'allow', 19.00, 'month', 1000, 'month',
     'Cohere (Command, Embed, Rerank)'),
    ('starter', 'openai', 'gpt-4%', 'deny', 19.00, 'month', 1000, 'month',
     'premium: GPT-4 family (mini is allowed below)'),
    ('starter', 'openai', 'gpt-4o-mini%', 'allow', 19.00, 'month', 1000, 'month',
     'mid-tier: GPT-4o mini'),
    ('starter', 'anthropic', 'claude-%', 'deny', 19.00, 'month', 1000, 'month',
     'premium: Claude (Haiku is allowed below)'),
    ('starter', 'anthropic', 'claude-%haiku%', 'allow', 19.00, 'month', 1000, 'month',
     'mid-tier: Claude Haiku'),
    ('starter', 'google', 'gemini-%pro%', 'deny', 19.00, 'month', 1000, 'month',
     'premium: Gemini Pro'),
    ('starter', 'google', 'gemini-%flash%', 'allow', 19.00, 'month', 1000, 'month',
     'mid-tier: Gemini Flash'),
    -- Professional ($49/month, 10,000 API calls/month): Starter plus OpenAI
    -- GPT-4, Anthropic Claude and Google Gemini Pro; no custom provider.
    ('professional', 'ollama', '%', 'allow', 49.00, 'month', 10000, 'month',
     'local models on our own model servers'),
    ('professional', 'openrouter', '%:free', 'allow', 49.00, 'month', 10000, 'month',
     'OpenRouter free models (ids end in :free)'),
    ('professional', 'openrouter', 'openai/gpt-4%', 'allow', 49.00, 'month', 10000, 'month',
     'GPT-4 family through OpenRouter'),
    ('professional', 'openrouter', 'anthropic/claude-%', 'allow', 49.00, 'month', 10000, 'month',
     'Claude through OpenRouter'),
    ('professional', 'openrouter', 'google/gemini-%', 'allow', 49.00, 'month', 10000, 'month',
     'Gemini (Pro and Flash) through OpenRouter'),
    ('professional', 'groq', '%', 'allow', 49.00, 'month', 10000, 'month',
     'Groq (open-weight models)'),
    ('professional', 'together', '%', 'allow', 49.00, 'month', 10000, 'month',
     'Together AI (open-weight models)'),
    ('professional', 'cohere', '%', 'allow', 49.00, 'month', 10000, 'month',
     'Cohere (Command, Embed, Rerank)'),
    ('professional', 'openai', 'gpt-4%', 'allow', 49.00, 'month', 10000, 'month',
     'GPT-4 family (gpt-4, gpt-4-turbo, gpt-4o, gpt-4o-mini)'),
    ('professional', 'anthropic', 'claude-%', 'allow', 49.00, 'month', 10000, 'month',
     'Claude (Haiku, Sonnet, Opus)'),
    ('professional', 'google', 'gemini-%', 'allow', 49.00, 'month', 10000, 'month',
     'Gemini (Pro and Flash)'),
    ('professional', 'custom', '%', 'deny', 49.00, 'month', 10000, 'month',
     'no custom providers below Enterprise'),
    -- Enterprise ($99/month, no limits): every provider and model, custom
    -- providers included.
    ('enterprise', 'ollama', '%', 'allow', 99.00, 'month', NULL, NULL,
     'unrestricted'),
    ('enterprise', 'openrouter', '%', 'allow', 99.00, 'month', NULL, NULL,
     'unrestricted'),
    ('enterprise', 'groq', '%', 'allow', 99.00, 'month', NULL, NULL,
     'unrestricted'),
    ('enterprise', 'together', '%', 'allow', 99.00, 'month', NULL, NULL,
     'unrestricted'),
    ('enterprise', 'cohere', '%', 'allow', 99.00, 'month', NULL, NULL,
     'unrestricted'),
    ('enterprise', 'openai', '%', 'allow', 99.00, 'month', NULL, NULL,
     'unrestricted'),
    ('enterprise', 'anthropic', '%', 'allow', 99.00, 'month', NULL, NULL,
     'unrestricted'),
    ('enterprise', 'google', '%', 'allow', 99.00, 'month', NULL, NULL,
     'unrestricted'),
    ('enterprise', 'custom', '%', 'allow', 99.00, 'month', NULL, NULL,
     'custom providers (own endpoints)')
ON CONFLICT (tier, provider, model_pattern) DO UPDATE
SET effect                = EXCLUDED.effect,
    tier_price_usd        = EXCLUDED.tier_price_usd,
    billing_period        = EXCLUDED.billing_period,
    api_call_limit        = EXCLUDED.api_call_limit,
    api_call_limit_period = EXCLUDED.api_call_limit_period,
    note                  = EXCLUDED.note,
    updated_at            = now()
WHERE (r.effect, r.tier_price_usd, r.billing_period,
       r.api_call_limit, r.api_call_limit_period, r.note)
      IS DISTINCT FROM
      (EXCLUDED.effect, EXCLUDED.tier_price_usd, EXCLUDED.billing_period,
       EXCLUDED.api_call_limit, EXCLUDED.api_call_limit_period, EXCLUDED.note);

COMMIT;
