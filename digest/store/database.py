"""The state database: papers (first seen, merged across sources) and per-source fetch state.

The only module that touches SQL. SQLite by default (one file next to the config); any
SQLAlchemy URL (PostgreSQL) works the same, the schema being plain portable SQL. Schema
changes are numbered migrations recorded in `schema_migrations`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.types import TypeDecorator

from ..config import Config
from ..errors import StoreError
from ..models import Listing, Paper, Validators
from .files import (
    backup_sqlite,
    copy_key,
    holds_something_else,
    make_private,
    read_marker,
    read_or_create_key,
    sqlite_file,
    write_marker,
)
from .migrations import MIGRATIONS

log = logging.getLogger(__name__)
T = TypeVar("T")


class UTCTime(TypeDecorator[datetime]):
    """Aware datetimes stored as fixed-width UTC ISO text, so text order is time order everywhere."""

    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> str | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store")
        utc = value.astimezone(UTC)
        # Written field by field: strftime's %Y gives "1", not "0001", for the year 1.
        return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
                f"{utc.second:02d}.{utc.microsecond:06d}Z")

    def process_result_value(self, value: str | None, dialect: Any) -> datetime | None:
        return None if value is None else read_time(value)


def read_time(text: str) -> datetime | None:
    """A stored time, also as older versions wrote it ("1-01-01T…" for the year 1); None, with
    a warning, for one that cannot be read: one bad row never stops a whole run."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    year, dash, rest = text.partition("-")
    if dash and year.isdigit() and len(year) < 4:
        try:
            return datetime.fromisoformat(f"{int(year):04d}-{rest}".replace("Z", "+00:00"))
        except ValueError:
            pass
    log.warning("state database: unreadable time %r, taken as unknown", text)
    return None


class JSONText(TypeDecorator[Any]):
    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else json.dumps(list(value) if isinstance(value, tuple) else value,
                                                     ensure_ascii=False)

    def process_result_value(self, value: str | None, dialect: Any) -> Any:
        if value is None:
            return None
        try:
            return json.loads(value)
        except ValueError:  # a row damaged outside the product: read as empty, never a failed run
            log.warning("state database: unreadable list %r, taken as empty", value[:80])
            return None


metadata = sa.MetaData()

papers = sa.Table(
    "papers", metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("authors", JSONText, nullable=False),
    sa.Column("abstract", sa.Text, nullable=False),
    sa.Column("categories", JSONText, nullable=False),
    sa.Column("published", UTCTime),
    sa.Column("first_seen_at", UTCTime, nullable=False),
    sa.Column("updated_at", UTCTime, nullable=False),
    sa.Column("pdf_url", sa.Text),
    sa.Column("hf_url", sa.Text),
    sa.Column("code_url", sa.Text),
    sa.Column("license", sa.Text),
    sa.Column("doi", sa.Text),
    sa.Column("version", sa.Integer),
    sa.Column("announce_type", sa.Text),
    sa.Column("upvotes", sa.Integer),
    sa.Column("comments", sa.Integer),
    sa.Column("ai_summary", sa.Text),
    sa.Column("ai_keywords", JSONText, nullable=False),
    sa.Column("thumbnail", sa.Text),
)

paper_sources = sa.Table(
    "paper_sources", metadata,
    sa.Column("paper_id", sa.Text, primary_key=True),
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("first_seen_at", UTCTime, nullable=False),
    sa.Column("last_seen_at", UTCTime, nullable=False),
)

fetch_state = sa.Table(
    "fetch_state", metadata,
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("location", sa.Text),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("last_attempt_at", UTCTime),
    sa.Column("last_success_at", UTCTime),
    sa.Column("last_error", sa.Text),
    sa.Column("last_count", sa.Integer),
)

settings_table = sa.Table(
    "settings", metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

migrations_table = sa.Table(
    "schema_migrations", metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("applied_at", UTCTime, nullable=False),
)



# ---------------------------------------------------------------- the store


@dataclass(frozen=True)
class SaveResult:
    fetched: int
    new: int
    merged: int
    updated: int


@dataclass(frozen=True)
class FetchState:
    source: str
    location: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_count: int | None = None

    def validators_for(self, location: str) -> Validators | None:
        """Validators only apply to the same address they were received from."""
        if self.location != location or not (self.etag or self.last_modified):
            return None
        return Validators(self.etag, self.last_modified)


_PAPER_FIELDS = [f.name for f in fields(Paper) if f.name != "sources"]
SECRET_ENV = "DIGEST_SECRET"
_MIGRATION_LOCK = 7_351_184_220  # the advisory lock key of digest's migrations (PostgreSQL)
_RETRIED = {"40P01", "40001"}  # PostgreSQL: deadlock detected, serialization failure
_CHUNK = 500  # stay under SQLite's bound-parameter limit


def create_engine(url: str) -> Engine:
    if url.startswith(("postgresql://", "postgres://")):  # as a user writes it: psycopg 3
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    try:
        engine = sa.create_engine(url, future=True)
    except ImportError:
        raise StoreError(f"cannot use the state database {url!r}: the PostgreSQL driver is not installed",
                         hint="pip install 'paper-digest[postgres]' (psycopg 3)") from None
    except (SQLAlchemyError, ValueError) as exc:
        raise StoreError(f"cannot use the state database {url!r}: {exc}",
                         hint="check `state:` in the config (e.g. sqlite:///digest.db)") from None
    if engine.dialect.name == "sqlite":
        _serialise_sqlite_writers(engine)
    return engine


_WRITERS: dict[Path, threading.RLock] = {}
_WRITERS_GUARD = threading.Lock()


def _writers(file: Path | None) -> threading.RLock | contextlib.nullcontext:
    """One lock per SQLite file in this process (every Store on it shares it); none for
    PostgreSQL, which locks rows, not the database."""
    if file is None:
        return contextlib.nullcontext()
    with _WRITERS_GUARD:
        return _WRITERS.setdefault(file.resolve(), threading.RLock())


READING = "digest_reading"  # an execution option: this connection only reads
ALONE = "digest_alone"  # an execution option: one statement, its own transaction (no BEGIN)


def reading(engine: Engine) -> Connection:
    """A connection for reads only (SQLite: a deferred BEGIN, which never waits for writers)."""
    return engine.connect().execution_options(**{READING: True})


def _serialise_sqlite_writers(engine: Engine) -> None:
    """WAL, a busy timeout, and BEGIN IMMEDIATE: concurrent runs queue instead of failing or racing."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let the "begin" hook emit BEGIN itself
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout = 60000")
        cursor.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL: a commit survives a killed process (not a power cut) without an fsync,
        # which keeps the instant between the ledger's `sending` and the end of DATA short.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A read (`reading`) takes a snapshot and lets writers on; a write queues for the lock.
        options = conn.get_execution_options()
        if not options.get(ALONE):  # (alone, SQLite runs the statement in a transaction of its own)
            conn.exec_driver_sql("BEGIN" if options.get(READING) else "BEGIN IMMEDIATE")


class Store:
    """Papers and fetch state in one database; every write is one transaction."""

    def __init__(self, url: str, *, key_file: Path | None = None, marker: Path | None = None) -> None:
        self.url = url
        self.file = sqlite_file(url)
        if self.file is not None:
            make_private(self.file)
        self.key_file = key_file
        self.marker = marker
        self.engine = create_engine(url)
        self._writers = _writers(self.file)
        self._guard(self.migrate)

    def read(self, work: Callable[[Connection], T], *, alone: bool = False) -> T:
        """`work` on a connection that only reads (a snapshot), with the store's error handling.
        `alone`: each statement on its own, without BEGIN and COMMIT around them (one round trip
        a statement), for reads whose statements need no common snapshot."""
        def run() -> T:
            if alone:
                return self._alone(work)
            with reading(self.engine) as conn:
                return work(conn)
        return cast(T, self._guard(run))

    def ping(self) -> None:
        """One round trip to the database (a health check); StoreError if it does not answer."""
        self.read(lambda conn: conn.execute(sa.text("SELECT 1")).scalar(), alone=True)

    def _alone(self, work: Callable[[Connection], T]) -> T:
        """`work` on a connection whose statements each run as their own transaction
        (PostgreSQL: autocommit; SQLite: no BEGIN, so its implicit transaction per statement)."""
        options: dict[str, Any] = {ALONE: True}
        if self.file is None:
            options["isolation_level"] = "AUTOCOMMIT"
        with self.engine.connect().execution_options(**options) as conn:
            result = work(conn)
            conn.commit()  # nothing is open: ends SQLAlchemy's own bookkeeping
            return result

    def write(self, work: Callable[[Connection], T], *, alone: bool = False) -> T:
        """`work` in one transaction (SQLite: BEGIN IMMEDIATE), with the store's error handling.
        SQLite: this process's writers take turns on a lock first. Waiting in SQLite's busy
        handler instead sleeps 1, 2, 5, 10… ms between tries, which made eight sending threads
        spend ~7 ms per digest waiting for each other; a lock hands over at once.
        `alone`: `work` is one statement, atomic by itself; PostgreSQL runs it without BEGIN and
        COMMIT around it (one round trip, not three)."""
        def run() -> T:
            if alone and self.file is None:
                return self._alone(work)
            with self._writers, self.engine.begin() as conn:
                return work(conn)
        return cast(T, self._guard(run))

    @property
    def returning(self) -> bool:
        """UPDATE … RETURNING works here (PostgreSQL; SQLite from 3.35)."""
        return self.engine.dialect.name != "sqlite" or sqlite3.sqlite_version_info >= (3, 35)

    def write_alone(self, statement: sa.Executable, params: dict[str, Any]) -> list[sa.Row[Any]]:
        """One statement that is atomic by itself, in one round trip: no BEGIN and COMMIT around
        it (PostgreSQL: autocommit; SQLite: its implicit transaction). Its rows, if it returns any,
        read before it returns: the change is then committed."""
        def rows(conn: Connection) -> list[sa.Row[Any]]:
            result = conn.execute(statement, params)
            return list(result) if result.returns_rows else []

        def run() -> list[sa.Row[Any]]:
            with self._writers:
                return self._alone(rows)
        return cast(list[sa.Row[Any]], self._guard(run))

    def _guard(self, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except SQLAlchemyError as exc:
            reason = _reason(exc)
            if "disk is full" in reason or "No space left" in reason:  # SQLite's words, PostgreSQL's
                hint = "the disk it is on is full: free some space (nothing was half-written; run again after)"
            elif self.engine.dialect.name == "sqlite":
                hint = "check `state:` in the config and that the file is writable"
            else:
                hint = "check `state:` in the config and that the server is running"
            raise StoreError(f"state database {self._shown()}: {exc.__class__.__name__}: {reason}",
                             hint=hint) from None

    def _shown(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def migrate(self) -> int:
        """Apply pending migrations; returns the schema version. Any number of processes may
        start at once: the migrations run under a lock (SQLite: BEGIN IMMEDIATE; PostgreSQL: an
        advisory lock held until the commit), so one applies them and the others see them done."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            migrations_table.create(conn, checkfirst=True)
            applied = set(conn.scalars(sa.select(migrations_table.c.version)))
            for version, migration in enumerate(MIGRATIONS, start=1):
                if version not in applied:
                    migration(conn)
                    conn.execute(migrations_table.insert().values(
                        version=version, name=migration.__name__.lstrip("_"), applied_at=_utcnow()))
            return len(MIGRATIONS)

    def close(self) -> None:
        self.engine.dispose()

    @staticmethod
    def _retrying(work: Callable[[], Any], attempts: int = 5) -> Any:
        """`work` again when PostgreSQL chose it as a deadlock's victim (it is safe: the
        transaction was rolled back whole)."""
        for attempt in range(attempts):
            try:
                return work()
            except DBAPIError as exc:
                if getattr(exc.orig, "sqlstate", None) not in _RETRIED or attempt == attempts - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")

    def signing_secret(self) -> str:
        """The key that signs links: $DIGEST_SECRET if set (several machines sharing one key),
        else the key file (kept apart from the database: a restored or rebuilt database keeps
        every link already mailed valid), else the database's own (PostgreSQL, shared by all)."""
        if os.environ.get(SECRET_ENV):
            return os.environ[SECRET_ENV]
        if self.key_file is not None:
            if not self.key_file.exists() and self.sent_before() is not None and self._stored_secret() is None:
                # A new key would silently break every link already mailed: unsubscribing included
                raise StoreError(f"the signing key {self.key_file} is gone, but digests were sent with it: every "
                                 "unsubscribe, manage and rating link in them needs it",
                                 hint=f"restore it from a backup (`digest backup` and the daily backups copy it "
                                      f"beside the database's copies, as {self.key_file.name}); "
                                      f"to start again with a new key, which breaks those links, delete {self.marker}")
            return read_or_create_key(self.key_file, seed=self._stored_secret)
        return self.secret()

    def _stored_secret(self) -> str | None:
        return self.setting("secret")

    def setting(self, key: str) -> str | None:
        """A value of the `settings` table (None if unset)."""
        return self.read(lambda conn: conn.scalar(sa.select(settings_table.c.value).where(settings_table.c.key == key)))

    def put_setting(self, key: str, value: str) -> None:
        def work(conn: Connection) -> None:
            insert = dialect_insert(conn)(settings_table).values(key=key, value=value)
            conn.execute(insert.on_conflict_do_update(index_elements=[settings_table.c.key], set_={"value": value}))
        self.write(work)

    # ------------------------------------------------------------ safety of the state

    def sent_before(self) -> dict | None:
        """The marker's content when this configuration has sent digests with some database."""
        return read_marker(self.marker) if self.marker is not None else None

    def mark_sent(self, now: datetime) -> None:
        if self.marker is not None:
            write_marker(self.marker, self.engine.url.render_as_string(hide_password=True), now)

    def backup(self, target: Path) -> int:
        """A consistent copy of the database (safe while it is in use); its size in bytes."""
        if self.file is None:
            raise StoreError(f"`digest backup` copies SQLite databases; {self._shown()} is not one",
                             hint="back PostgreSQL up with pg_dump (e.g. pg_dump -Fc DBNAME > digest.dump)")
        try:
            size = backup_sqlite(self.file, target)
            if self.key_file is not None and self.key_file.is_file():  # the database's links need it
                copy_key(self.key_file, target.parent / self.key_file.name)
            return size
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot back up {self.file} to {target}: {exc}",
                             hint="check that the backup folder exists and is writable") from None

    def secret(self) -> str:
        """This installation's signing key (unsubscribe links), made on first use and kept."""

        def get_or_make() -> str:
            with self.engine.begin() as conn:  # never check-then-insert: the first to insert wins
                conn.execute(dialect_insert(conn)(settings_table).values(
                    key="secret", value=secrets.token_urlsafe(32)).on_conflict_do_nothing(
                    index_elements=[settings_table.c.key]))
                return conn.scalar(sa.select(settings_table.c.value).where(settings_table.c.key == "secret"))

        return self._guard(get_or_make)

    # ------------------------------------------------------------ writing

    def save_listing(self, source: str, listing: Listing, now: datetime, *, location: str | None = None,
                     validators: Validators | None = None) -> SaveResult:
        """Store one source's papers and its fetch state in one transaction.

        A paper already stored (from any source) is merged, never duplicated; a crash before
        the commit leaves nothing behind and keeps the old validators, so the next fetch
        simply does the work again.
        """
        incoming: dict[str, Paper] = {}
        for paper in listing.papers:
            incoming[paper.id] = incoming[paper.id].merged_with(paper) if paper.id in incoming else paper

        def write() -> SaveResult:
            merged = updated = 0
            with self.engine.begin() as conn:
                ids = sorted(incoming)  # one order for every writer: no deadlock between them
                # Insert what is new, never check-then-insert: a paper another source inserted
                # meanwhile is a conflict skipped here and merged below.
                inserted: set[str] = set()
                for start in range(0, len(ids), _CHUNK):
                    rows = [_row(incoming[i], first_seen_at=now, updated_at=now) for i in ids[start:start + _CHUNK]]
                    statement = dialect_insert(conn)(papers).values(rows).on_conflict_do_nothing(
                        index_elements=[papers.c.id]).returning(papers.c.id)
                    inserted |= set(conn.scalars(statement))
                # The others, locked while merged (PostgreSQL: FOR UPDATE): no last writer wins.
                for old in self._load(conn, [i for i in ids if i not in inserted], lock=True):
                    combined = old.merged_with(incoming[old.id])
                    if source not in old.sources:
                        merged += 1
                    if _row(combined) != _row(old):
                        conn.execute(papers.update().where(papers.c.id == old.id).values(_row(combined, updated_at=now)))
                        updated += 1
                for ident in ids:
                    self._seen_in(conn, ident, source, now)
                self._record_fetch(conn, source, now, location=location, validators=validators,
                                   count=len(incoming), error=None)
            return SaveResult(len(listing.papers), len(inserted), merged, updated)

        return self._guard(lambda: self._retrying(write))

    def record_fetch(self, source: str, now: datetime, *, location: str | None = None,
                     validators: Validators | None = None, error: str | None = None) -> None:
        """Record an attempt that stored no papers: not modified (validators) or failed (error)."""

        def write() -> None:
            with self.engine.begin() as conn:
                self._record_fetch(conn, source, now, location=location, validators=validators,
                                   count=None, error=error)

        self._guard(write)

    def _seen_in(self, conn: Connection, paper_id: str, source: str, now: datetime) -> None:
        insert = dialect_insert(conn)(paper_sources).values(
            paper_id=paper_id, source=source, first_seen_at=now, last_seen_at=now)
        conn.execute(insert.on_conflict_do_update(
            index_elements=[paper_sources.c.paper_id, paper_sources.c.source],
            set_={"last_seen_at": now}))

    def _record_fetch(self, conn: Connection, source: str, now: datetime, *, location: str | None,
                      validators: Validators | None, count: int | None, error: str | None) -> None:
        values: dict[str, Any] = {"last_attempt_at": now, "last_error": error}
        if error is None:
            values["last_success_at"] = now
            values["location"] = location
            if validators is not None:
                values["etag"], values["last_modified"] = validators.etag, validators.last_modified
            if count is not None:
                values["last_count"] = count
        insert = dialect_insert(conn)(fetch_state).values(source=source, **values)
        conn.execute(insert.on_conflict_do_update(index_elements=[fetch_state.c.source], set_=values))

    # ------------------------------------------------------------ reading

    def fetch_state(self, source: str) -> FetchState:
        row = self.read(lambda conn: conn.execute(sa.select(fetch_state).where(fetch_state.c.source == source)).first())
        return FetchState(**row._mapping) if row else FetchState(source)

    def newest_first_seen(self) -> datetime | None:
        """When the most recently seen paper was first seen (None: no papers yet)."""
        return cast("datetime | None", self.read(lambda conn: conn.scalar(sa.select(sa.func.max(papers.c.first_seen_at)))))

    def papers(self, *, since: datetime | None = None, source: str | None = None,
               ids: Sequence[str] | None = None) -> list[Paper]:
        """Stored papers, newest first-seen first; filtered by first-seen time, source or ids."""

        if ids is not None:
            return self.read(lambda conn: self._load(conn, list(ids)))
        query = sa.select(papers).order_by(papers.c.first_seen_at.desc(), papers.c.id)
        if since is not None:
            query = query.where(papers.c.first_seen_at >= since)
        if source is not None:
            query = query.where(papers.c.id.in_(
                sa.select(paper_sources.c.paper_id).where(paper_sources.c.source == source)))
        return self.read(lambda conn: self._with_sources(conn, conn.execute(query).all()))

    def known_categories(self, ids: Sequence[str]) -> dict[str, tuple[str, ...]]:
        """The stored categories of those of these papers that have some."""

        def read(conn: Connection) -> dict[str, tuple[str, ...]]:
            found: dict[str, tuple[str, ...]] = {}
            for start in range(0, len(ids), _CHUNK):
                query = sa.select(papers.c.id, papers.c.categories).where(papers.c.id.in_(ids[start:start + _CHUNK]))
                found.update({i: tuple(c) for i, c in conn.execute(query) if c})
            return found

        return self.read(read)

    def count(self) -> int:
        return int(self.read(lambda conn: conn.scalar(sa.select(sa.func.count()).select_from(papers))) or 0)

    def _load(self, conn: Connection, ids: list[str], *, lock: bool = False) -> list[Paper]:
        out: list[Paper] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            query = sa.select(papers).where(papers.c.id.in_(chunk)).order_by(papers.c.id)
            if lock and conn.dialect.name == "postgresql":
                query = query.with_for_update()
            rows = conn.execute(query).all()
            out += self._with_sources(conn, rows)
        return out

    @staticmethod
    def _with_sources(conn: Connection, rows: Sequence[Any]) -> list[Paper]:
        by_id: dict[str, list[str]] = {r.id: [] for r in rows}
        keys = list(by_id)
        for start in range(0, len(keys), _CHUNK):
            query = (sa.select(paper_sources.c.paper_id, paper_sources.c.source)
                     .where(paper_sources.c.paper_id.in_(keys[start:start + _CHUNK]))
                     .order_by(paper_sources.c.first_seen_at, paper_sources.c.source))
            for paper_id, source in conn.execute(query):
                by_id[paper_id].append(source)
        return [_paper(r._mapping, by_id[r.id]) for r in rows]


def open_store(config: Config) -> Store:
    """The store of a configuration: its database, its key file and its marker."""
    return Store(config.database_url(), key_file=config.key_path(), marker=config.marker_path())


def cannot_open(url: str) -> str | None:
    """Why the state database at `url` could not be opened from here, if it could not, for
    `digest validate`: nothing is created (a SQLite file's folder and kind are looked at), and
    a PostgreSQL server is asked once, for at most a few seconds."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if path.is_dir():
            return f"{path} is a folder: name the database file in it (e.g. sqlite:///digest.db)"
        if path.exists():
            return f"{path} is not a SQLite database (it holds something else)" if holds_something_else(path) else None
        if not path.parent.is_dir():
            return f"the folder of the state database, {path.parent}, does not exist: create it, or change `state:`"
        if not os.access(path.parent, os.W_OK | os.X_OK):
            return f"cannot create the state database in {path.parent}: the folder is not writable"
        return None
    try:
        engine = create_engine(url)
    except StoreError as exc:
        return str(exc)
    try:
        with sa.create_engine(engine.url, connect_args={"connect_timeout": 5}).connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except SQLAlchemyError as exc:
        reason = _reason(exc).strip().splitlines()[0]
        shown = engine.url.set(drivername="postgresql").render_as_string(hide_password=True)  # as written
        return (f"cannot reach the state database {shown}: {reason} "
                "(check the URL, that the server runs and that this machine may connect)")
    finally:
        engine.dispose()
    return None


def _reason(exc: SQLAlchemyError) -> str:
    """What the database or its driver said (SQLAlchemy's wrapper around it left out)."""
    return str(getattr(exc, "orig", None) or exc)


def dialect_insert(conn: Connection) -> Any:
    """INSERT with ON CONFLICT, in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert


def _row(paper: Paper, **extra: Any) -> dict[str, Any]:
    return {**{name: getattr(paper, name) for name in _PAPER_FIELDS}, **extra}


def _paper(row: Any, sources: Iterable[str]) -> Paper:
    values = {name: row[name] for name in _PAPER_FIELDS}
    for name in ("authors", "categories", "ai_keywords"):
        values[name] = tuple(values[name] or ())
    return Paper(**values, sources=tuple(sources))


def _utcnow() -> datetime:
    return datetime.now(UTC)
