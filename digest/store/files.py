"""The state's files on disk: a SQLite database created private (0600, its -wal and -shm
follow), the signing key kept in its own file apart from the database, the marker that says
this configuration has sent digests before, and backups (SQLite's online backup)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ..errors import StoreError, UnusableTarget
from ..readfile import NotAFile, TooLarge, read_regular

log = logging.getLogger(__name__)

PRIVATE = 0o600
SQLITE_HEADER = b"SQLite format 3\x00"  # the first bytes of every SQLite database file
KEY_BYTES = 4_096  # a key is a line of some forty characters


def sqlite_file(url: str) -> Path | None:
    """The database file of a sqlite:/// URL (None for :memory: and other databases)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    rest = url[len(prefix):].split("?", 1)[0]
    return Path(rest) if rest and rest != ":memory:" else None


def make_private(path: Path) -> None:
    """Create `path` readable by its owner only, or make an existing one so (with the -wal and
    -shm files beside it): the state holds every address, and any local user who could read
    it could read them all."""
    try:
        # Create it, never open an existing one: closing any descriptor of a file drops every
        # POSIX lock this process holds on it, SQLite's included, so a second Store opened in a
        # process while another writes (the daemon's jobs) let other processes write at the same
        # time and corrupted the database.
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE)
        except FileExistsError:
            pass
        else:
            os.close(fd)
        # `state:` may name any file: change the mode of a database only (read only when the
        # mode must change: opening it would drop the locks, as above)
        if path.stat().st_mode & 0o077 and holds_something_else(path):
            raise StoreError(f"{path} is not a SQLite database (it holds something else): left as it is",
                             hint="check `state:` in the config: it names the database file digest keeps")
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if file.exists() and file.stat().st_mode & 0o077:
                os.chmod(file, PRIVATE)
    except FileNotFoundError:
        raise StoreError(f"cannot create the state database {path}: its folder does not exist",
                         hint="check `state:` in the config") from None
    except PermissionError as exc:
        raise StoreError(f"cannot create the state database {path}: {exc.strerror}",
                         hint="check `state:` in the config and that the folder is writable") from None


def holds_something_else(path: Path) -> bool:
    """Whether the file holds something, and not a SQLite database (an empty file is one to be)."""
    with path.open("rb") as existing:
        header = existing.read(len(SQLITE_HEADER))
    return bool(header) and header != SQLITE_HEADER


def read_or_create_key(path: Path, seed: Callable[[], str | None]) -> str:
    """The signing key kept in `path` (0600); made on first use from `seed()` (the key an older
    version kept in the database, so links already mailed stay valid) or at random."""
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    key = seed() or secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE)
    except FileExistsError:  # another process made it first: use theirs
        return _read_key(path)
    except OSError as exc:
        raise StoreError(f"cannot write the signing key to {path}: {exc.strerror}",
                         hint="check `key_file:` in the config, or set $DIGEST_SECRET") from None
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(key + "\n")
    log.info("signing key written to %s", path)
    return key


def _read_key(path: Path) -> str:
    try:
        key = read_regular(path, KEY_BYTES).decode("utf-8").strip()
    except (UnicodeDecodeError, NotAFile, TooLarge):  # not a key: said below, the file left as it is
        key = "\n"
    if "\n" in key:  # `key_file:` may name any file: one that is not a key is neither used nor changed
        raise StoreError(f"{path} does not hold a signing key (one line of letters and digits): left as it is",
                         hint="check `key_file:` in the config, or delete the file there to make a new key")
    if len(key) < 16:
        raise StoreError(f"the signing key in {path} is too short or empty",
                         hint="restore it from a backup (links already mailed need it), or delete it to make a new one")
    if path.stat().st_mode & 0o077:
        os.chmod(path, PRIVATE)
    return key


# ---------------------------------------------------------------- has this configuration sent before?


def read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"first_sent": "unknown"}


def write_marker(path: Path, database: str, now: datetime) -> None:
    if path.exists():
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE)
    except FileExistsError:
        return
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        json.dump({"database": database, "first_sent": now.isoformat()}, file)


# ---------------------------------------------------------------- backups


def backup_sqlite(database: Path, target: Path) -> int:
    """A consistent copy of a live database (SQLite's online backup: safe while `digest run`
    writes); returns its size in bytes. It replaces an older backup, never another file."""
    if target.resolve() == database.resolve():
        raise UnusableTarget(f"{target} is the state database itself: a backup goes to another file",
                         hint="name another file, or leave FILE out for backups/ beside the config")
    if target.is_file() and holds_something_else(target):
        raise UnusableTarget(f"{target} exists and is not a SQLite database: left as it is",
                         hint="a backup replaces an older backup only: name another file")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    make_private(partial)
    source = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    try:
        copy = sqlite3.connect(partial)
        try:
            source.backup(copy)
        finally:
            copy.close()
    finally:
        source.close()
    partial.replace(target)
    return target.stat().st_size


def copy_key(key: Path, target: Path) -> None:
    """The signing key beside a backup (0600), written when it is not there yet or differs:
    a database restored without its key has every link it mailed broken."""
    if target.resolve() == key.resolve():
        return
    text = key.read_bytes()
    if target.is_file() and target.read_bytes() == text:
        return
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE)
    with os.fdopen(fd, "wb") as file:
        file.write(text)
    partial.replace(target)


def prune_backups(folder: Path, pattern: str, keep: int) -> list[Path]:
    """Delete all but the newest `keep` backups in `folder`; returns what was deleted."""
    found = sorted(folder.glob(pattern), key=lambda p: p.name, reverse=True)
    gone = found[keep:]
    for path in gone:
        path.unlink(missing_ok=True)
    return gone


def backup_name(now: datetime) -> str:
    return f"digest-{now.astimezone(UTC):%Y%m%d-%H%M%S}.db"
