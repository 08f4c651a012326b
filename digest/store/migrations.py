"""Schema changes: each migration is plain SQL that runs on SQLite and PostgreSQL alike, applied
once, in order, and recorded in `schema_migrations`. Never edit a released one: add the next."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.engine import Connection


def _m1_papers_and_fetch_state(conn: Connection) -> None:
    for ddl in (
        """CREATE TABLE papers (
            id TEXT PRIMARY KEY, title TEXT NOT NULL, url TEXT NOT NULL, authors TEXT NOT NULL,
            abstract TEXT NOT NULL, categories TEXT NOT NULL, published TEXT,
            first_seen_at TEXT NOT NULL, updated_at TEXT NOT NULL, pdf_url TEXT, hf_url TEXT,
            code_url TEXT, license TEXT, doi TEXT, version INTEGER, announce_type TEXT,
            upvotes INTEGER, comments INTEGER, ai_summary TEXT, ai_keywords TEXT NOT NULL,
            thumbnail TEXT)""",
        "CREATE INDEX papers_first_seen_at ON papers (first_seen_at)",
        """CREATE TABLE paper_sources (
            paper_id TEXT NOT NULL REFERENCES papers (id), source TEXT NOT NULL,
            first_seen_at TEXT NOT NULL, last_seen_at TEXT NOT NULL,
            PRIMARY KEY (paper_id, source))""",
        "CREATE INDEX paper_sources_source ON paper_sources (source)",
        """CREATE TABLE fetch_state (
            source TEXT PRIMARY KEY, location TEXT, etag TEXT, last_modified TEXT,
            last_attempt_at TEXT, last_success_at TEXT, last_error TEXT, last_count INTEGER)""",
    ):
        conn.exec_driver_sql(ddl)


def _m2_settings(conn: Connection) -> None:
    conn.exec_driver_sql("CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL)")


def _m3_ledger(conn: Connection) -> None:
    for ddl in (
        """CREATE TABLE digests (
            id INTEGER PRIMARY KEY, subscriber TEXT NOT NULL, period TEXT NOT NULL,
            message_id TEXT NOT NULL, papers TEXT NOT NULL, state TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, claimed_by TEXT,
            created_at TEXT NOT NULL, matched_at TEXT NOT NULL, updated_at TEXT NOT NULL, sent_at TEXT,
            UNIQUE (subscriber, period))""",
        "CREATE INDEX digests_state ON digests (state)",
        "CREATE INDEX digests_subscriber ON digests (subscriber, state, matched_at)",
        """CREATE TABLE subscriber_state (
            subscriber TEXT PRIMARY KEY, hard_failures INTEGER NOT NULL DEFAULT 0,
            suspended_at TEXT, suspended_reason TEXT, unsubscribed_at TEXT)""",
    ):
        conn.exec_driver_sql(ddl)


def _m4_uncertain_resends(conn: Connection) -> None:
    conn.exec_driver_sql("ALTER TABLE digests ADD COLUMN uncertain_resends INTEGER NOT NULL DEFAULT 0")


MIGRATIONS: list[Callable[[Connection], None]] = [
    _m1_papers_and_fetch_state, _m2_settings, _m3_ledger, _m4_uncertain_resends]
