"""Money tests reuse the control plane's database fixtures (SQLite, and PostgreSQL when
reachable): a freshly migrated database per backend, an engine per test."""

from __future__ import annotations

from tests.control.conftest import db, db_settings

__all__ = ["db", "db_settings"]
