"""The version recorded in every ledger and history row (kept apart: no metadata lookup at import)."""

__version__ = "0.1.0"
