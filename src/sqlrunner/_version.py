"""The version recorded in every ledger and history row (no metadata lookup at import)."""

__version__ = "0.1.0"
