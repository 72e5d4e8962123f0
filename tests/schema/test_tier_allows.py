"""llm_tier_allows(tier, provider, model) over the seeded rules: the access matrix.

Deny by default; an exact pattern beats a wildcard one, then more literal characters
win, then deny wins a tie (see COMMENT ON FUNCTION llm_tier_allows).
"""

from __future__ import annotations

import psycopg
import pytest

ALLOWED = True
DENIED = False

MATRIX: list[tuple[str, str, str, bool]] = [
    # trial: Ollama, OpenRouter :free, Groq; nothing else
    ("trial", "ollama", "llama3.1:8b", ALLOWED),
    ("trial", "openrouter", "meta-llama/llama-3.1-8b-instruct:free", ALLOWED),
    ("trial", "openrouter", "google/gemini-2.0-flash-exp:free", ALLOWED),
    ("trial", "openrouter", "meta-llama/llama-3.1-70b-instruct", DENIED),  # paid route
    ("trial", "openrouter", "google/gemini-2.5-pro-exp-03-25:free", DENIED),  # premium
    ("trial", "openrouter", "anthropic/claude-3.5-sonnet:free", DENIED),
    ("trial", "openrouter", "openai/gpt-4o:free", DENIED),
    ("trial", "groq", "llama-3.3-70b-versatile", ALLOWED),
    ("trial", "openai", "gpt-4o", DENIED),
    ("trial", "openai", "gpt-4o-mini", DENIED),  # mid-tier starts at starter
    ("trial", "anthropic", "claude-3-5-haiku-20241022", DENIED),
    ("trial", "google", "gemini-1.5-flash", DENIED),
    ("trial", "together", "meta-llama/Llama-3-70b-chat-hf", DENIED),
    ("trial", "cohere", "command-r", DENIED),
    ("trial", "custom", "my-model", DENIED),
    # free: legacy, the same as trial
    ("free", "ollama", "mistral:7b", ALLOWED),
    ("free", "openrouter", "qwen/qwen-2-7b-instruct:free", ALLOWED),
    ("free", "openrouter", "openai/gpt-4o-mini", DENIED),
    ("free", "groq", "gemma2-9b-it", ALLOWED),
    ("free", "openai", "gpt-4o", DENIED),
    ("free", "anthropic", "claude-3-opus-20240229", DENIED),
    # starter: trial + mid-tier (gpt-4o-mini, Claude Haiku, Gemini Flash), Together, Cohere
    ("starter", "ollama", "llama3.1:8b", ALLOWED),
    ("starter", "groq", "llama-3.1-8b-instant", ALLOWED),
    ("starter", "together", "meta-llama/Llama-3-70b-chat-hf", ALLOWED),
    ("starter", "cohere", "command-r-plus", ALLOWED),
    ("starter", "openai", "gpt-4o-mini", ALLOWED),  # 'gpt-4o-mini%' beats 'gpt-4%' deny
    ("starter", "openai", "gpt-4o-mini-2024-07-18", ALLOWED),
    ("starter", "openai", "gpt-4o", DENIED),
    ("starter", "openai", "gpt-4-turbo", DENIED),
    ("starter", "openai", "o1-preview", DENIED),
    ("starter", "anthropic", "claude-3-5-haiku-20241022", ALLOWED),
    ("starter", "anthropic", "claude-3-5-sonnet-20241022", DENIED),
    ("starter", "anthropic", "claude-3-opus-20240229", DENIED),
    ("starter", "google", "gemini-1.5-flash", ALLOWED),
    ("starter", "google", "gemini-1.5-pro", DENIED),
    ("starter", "openrouter", "openai/gpt-4o-mini", ALLOWED),
    ("starter", "openrouter", "openai/gpt-4o", DENIED),
    ("starter", "openrouter", "anthropic/claude-3-haiku", ALLOWED),
    ("starter", "openrouter", "anthropic/claude-3.5-sonnet", DENIED),
    ("starter", "openrouter", "google/gemini-flash-1.5", ALLOWED),
    ("starter", "openrouter", "google/gemini-pro-1.5", DENIED),
    ("starter", "openrouter", "mistralai/mistral-7b-instruct:free", ALLOWED),
    ("starter", "custom", "my-model", DENIED),
    # professional: starter + GPT-4, Claude, Gemini Pro; no custom providers
    ("professional", "openai", "gpt-4o", ALLOWED),
    ("professional", "openai", "gpt-4-turbo", ALLOWED),
    ("professional", "openai", "gpt-4o-mini", ALLOWED),
    ("professional", "openai", "o1-preview", DENIED),  # reasoning models: enterprise
    ("professional", "anthropic", "claude-3-opus-20240229", ALLOWED),
    ("professional", "anthropic", "claude-3-5-haiku-20241022", ALLOWED),
    ("professional", "google", "gemini-1.5-pro", ALLOWED),
    ("professional", "google", "gemini-2.0-flash", ALLOWED),
    ("professional", "openrouter", "anthropic/claude-3.5-sonnet", ALLOWED),
    ("professional", "openrouter", "openai/gpt-4o", ALLOWED),
    ("professional", "openrouter", "google/gemini-pro-1.5", ALLOWED),
    ("professional", "openrouter", "openai/o1", DENIED),
    ("professional", "openrouter", "x-ai/grok-2", DENIED),
    ("professional", "openrouter", "deepseek/deepseek-r1:free", ALLOWED),
    ("professional", "together", "Qwen/Qwen2.5-72B-Instruct-Turbo", ALLOWED),
    ("professional", "custom", "my-model", DENIED),
    # enterprise: everything, custom providers included
    ("enterprise", "custom", "my-model", ALLOWED),
    ("enterprise", "custom", "anything/at:all", ALLOWED),
    ("enterprise", "openai", "o1-preview", ALLOWED),
    ("enterprise", "openrouter", "x-ai/grok-2", ALLOWED),
    ("enterprise", "anthropic", "claude-3-opus-20240229", ALLOWED),
    ("enterprise", "google", "gemini-1.5-pro", ALLOWED),
    ("enterprise", "ollama", "llama3.1:70b", ALLOWED),
    # unknown tiers and providers, odd input: false, never an error or NULL
    ("platinum", "openai", "gpt-4o", DENIED),
    ("", "ollama", "llama3.1:8b", DENIED),
    ("Enterprise", "openai", "gpt-4o", DENIED),  # names are lower-case, compared as is
    ("enterprise", "mistral", "mistral-large", DENIED),
    ("enterprise", "OpenAI", "gpt-4o", DENIED),
    ("enterprise", "", "gpt-4o", DENIED),
]


@pytest.mark.parametrize(("tier", "provider", "model", "allowed"), MATRIX)
def test_access_matrix(
    shared_applied_dsn: str, tier: str, provider: str, model: str, allowed: bool
) -> None:
    with psycopg.connect(shared_applied_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT llm_tier_allows(%s, %s, %s)", (tier, provider, model))
        assert row.fetchone() == (allowed,)


@pytest.mark.parametrize(
    "args",
    [(None, "ollama", "llama3"), ("enterprise", None, "x"), ("enterprise", "custom", None)],
)
def test_null_argument_is_denied(
    shared_applied_dsn: str, args: tuple[str | None, str | None, str | None]
) -> None:
    with psycopg.connect(shared_applied_dsn, autocommit=True) as conn:
        row = conn.execute("SELECT llm_tier_allows(%s::text, %s::text, %s::text)", args)
        assert row.fetchone() == (False,)


def test_free_is_the_same_as_trial(shared_applied_dsn: str) -> None:
    with psycopg.connect(shared_applied_dsn, autocommit=True) as conn:
        differences = conn.execute(
            "(SELECT provider, model_pattern, effect FROM tier_model_rules WHERE tier = 'free'"
            " EXCEPT SELECT provider, model_pattern, effect FROM tier_model_rules"
            " WHERE tier = 'trial')"
            " UNION ALL"
            " (SELECT provider, model_pattern, effect FROM tier_model_rules WHERE tier = 'trial'"
            " EXCEPT SELECT provider, model_pattern, effect FROM tier_model_rules"
            " WHERE tier = 'free')"
        ).fetchall()
    assert differences == []


PRECEDENCE: list[tuple[list[tuple[str, str]], str, bool]] = [
    # (extra enterprise/custom rules: pattern, effect), model, expected
    ([("tie%", "deny"), ("%tie", "allow")], "tietie", False),  # 3 literals each: deny wins
    ([("ab%", "allow"), ("%abc", "deny")], "abc", False),  # 3 literals beat 2
    ([("ab%", "deny"), ("%abc", "allow")], "abc", True),
    ([("exact-%", "deny"), ("exact-1", "allow")], "exact-1", True),  # exact beats wildcard
    ([("a_c", "deny")], "abc", False),  # _ is one character
    ([("a_c", "deny")], "a_c", False),  # and no escape character: _ still a wildcard
    ([("a_c", "deny")], "abbc", True),  # the enterprise custom '%' allow applies
]


@pytest.mark.parametrize(("rules", "model", "allowed"), PRECEDENCE)
def test_precedence(
    shared_applied_dsn: str, rules: list[tuple[str, str]], model: str, allowed: bool
) -> None:
    """Extra rules in a transaction that is rolled back: the shared database stays as is."""
    with psycopg.connect(shared_applied_dsn) as conn:
        for pattern, effect in rules:
            conn.execute(
                "INSERT INTO tier_model_rules (tier, provider, model_pattern, effect,"
                " tier_price_usd, billing_period) VALUES ('enterprise', 'custom', %s, %s,"
                " 99, 'month')",
                (pattern, effect),
            )
        row = conn.execute("SELECT llm_tier_allows('enterprise', 'custom', %s)", (model,))
        assert row.fetchone() == (allowed,)
        conn.rollback()


def test_function_is_stable_with_pinned_search_path(shared_applied_dsn: str) -> None:
    with psycopg.connect(shared_applied_dsn, autocommit=True) as conn:
        conn.execute("SET search_path = pg_temp")  # a caller's search_path does not matter
        row = conn.execute(
            "SELECT p.provolatile, p.proconfig, public.llm_tier_allows('trial', 'ollama', 'x'),"
            " obj_description(p.oid, 'pg_proc') LIKE '%%deny wins%%'"
            " FROM pg_catalog.pg_proc p"
            " WHERE p.oid = 'public.llm_tier_allows(text, text, text)'::regprocedure"
        ).fetchone()
    assert row == ("s", ["search_path=pg_catalog, pg_temp"], True, True)
