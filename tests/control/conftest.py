"""Database fixtures for control-plane service tests, on SQLite and (when reachable) PostgreSQL.

The schema is migrated once per test session and backend (a temporary SQLite file; a uniquely
named PostgreSQL database, dropped at the end, so parallel runs never collide). Each test gets
its own engine on its own event loop; tests isolate their data by creating fresh accounts.
"""

from __future__ import annotations

from tests.support.db import db, db_settings, own_db  # noqa: F401 -- fixtures
