"""What a text means, as a vector: a sentence encoder (all-MiniLM-L6-v2, encoder.py) turns a
paper's title and abstract, or a topic's name, description and keywords, into 384 numbers, and
the cosine of two says how close in meaning they are, whichever words each uses ("making
inference cheaper" meets "KV-cache eviction"; "ASR" in a speech topic meets "speech
recognition", not "attack success rate").

Encoding is the costly part (tens of milliseconds per paper on one core), and a pure function
of the text and the model, so each vector is made once: kept in memory, and in a SQLite file
in the user's cache folder (kept.py) that every process on the machine shares, keyed by a hash
of the model and the text. A paper is encoded the first time a described topic is matched
against it, then never again. Without the model's files, scoring falls back to words alone.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..kept import cache_home

if TYPE_CHECKING:
    from .encoder import Encoder

log = logging.getLogger(__name__)

MODEL_FOLDER = Path(__file__).with_name("minilm")
MODEL_FILES = ("minilm-l6-int8.npz", "tokenizer.json")
MODEL = "all-MiniLM-L6-v2/int8/128"  # part of every key: another model or length, other vectors
MAX_TOKENS = 128  # the model was trained on 128 word pieces: a title and the abstract's start
DIMENSIONS = 384
KEPT_ON_DISK = 200_000  # vectors in the file (about 160 MB): months of papers, and many topics
KEPT_IN_MEMORY = 100_000  # vectors (float16, 768 bytes each): a day's papers and many topics
ENCODE_BATCH = 64

_memory: dict[bytes, np.ndarray] = {}
_lock = threading.Lock()  # the manage pages' threads share this process's memory and file
_waiting: dict[str, None] = {}  # texts the background encoder has still to do, in order
_background: threading.Thread | None = None
_broken: list[str] = []  # why the model's files could not be loaded, once they were tried
_warned: set[Path] = set()


@cache
def encoder() -> Encoder | None:
    """The sentence encoder, loaded once (about 0.3 s); None when its files are missing."""
    from .encoder import Encoder

    try:
        return Encoder(*(MODEL_FOLDER / name for name in MODEL_FILES))
    except (OSError, ValueError) as exc:
        _broken.append(str(exc))
        log.warning("the sentence encoder could not be loaded (%s): described topics are scored by their words alone", exc)
        return None


def available() -> bool:
    """Whether the encoder's files are there (the model is loaded only when a text must be
    encoded: a run whose vectors are all kept never pays its 0.3 s and 90 MB)."""
    if _broken:
        return False
    missing = [name for name in MODEL_FILES if not (MODEL_FOLDER / name).is_file()]
    if missing and MODEL_FOLDER not in _warned:
        _warned.add(MODEL_FOLDER)
        log.warning("the sentence encoder's %s is missing from %s: described topics are scored by their words "
                    "alone (reinstall paper-digest)", " and ".join(missing), MODEL_FOLDER)
    return not missing


def paper_text(title: str, abstract: str) -> str:
    return f"{title}. {abstract}"


def topic_text(name: str, description: str | None, keywords: Sequence[str]) -> str:
    text = f"{name}: {description or ''}".strip()
    return f"{text} {', '.join(k.rstrip('*') for k in keywords)}".strip()


def keyword_text(name: str, keyword: str) -> str:
    return f"{name}: {keyword.rstrip('*')}"


def vectors(texts: Sequence[str], *, wait: bool = True) -> np.ndarray | None:
    """Unit vectors of `texts` (texts × 384, float32), made once per text; None without the
    model. With `wait` false, None too when some are not kept yet: those are encoded in the
    background (a page answers now, by words alone, and has them a few minutes later)."""
    if not available():
        return None
    keys = [text_key(text) for text in texts]
    out = np.empty((len(texts), DIMENSIONS), dtype=np.float32)
    missing: dict[bytes, list[int]] = {}
    with _lock:
        for row, key in enumerate(keys):
            found = _memory.get(key)
            if found is None:
                missing.setdefault(key, []).append(row)
            else:
                out[row] = found
    if missing:
        store = _Kept.open()
        made = store.read(list(missing)) if store is not None else {}
        new = [key for key in missing if key not in made]
        if new and not wait:
            _encode_later([texts[missing[key][0]] for key in new])
            return None
        if new:
            model = encoder()
            if model is None:
                return None
            for start in range(0, len(new), ENCODE_BATCH * 8):
                chunk = new[start:start + ENCODE_BATCH * 8]
                encoded = model.encode([texts[missing[key][0]] for key in chunk], max_tokens=MAX_TOKENS)
                fresh = dict(zip(chunk, encoded.astype(np.float16)))
                if store is not None:
                    store.write(fresh)
                made.update(fresh)
        with _lock:
            if len(_memory) + len(made) > KEPT_IN_MEMORY:
                _memory.clear()
            _memory.update(made)
        for key, rows in missing.items():
            out[rows] = made[key]
    norms = np.linalg.norm(out, axis=1, keepdims=True)  # float16 storage: scaled to unit again
    return out / np.where(norms > 0, norms, 1.0)


def _encode_later(texts: list[str]) -> None:
    """Queue texts for the one background encoder of this process (started when needed)."""
    global _background
    with _lock:
        _waiting.update(dict.fromkeys(texts))
        if _background is None or not _background.is_alive():
            _background = threading.Thread(target=_encode_waiting, name="sentence-encoder", daemon=True)
            _background.start()


def _encode_waiting() -> None:
    while True:
        with _lock:
            batch = list(_waiting)[:ENCODE_BATCH * 8]
            if not batch:
                return
        try:
            vectors(batch)
        except Exception:  # noqa: BLE001 - a background helper: the pages answer by words meanwhile
            log.exception("encoding papers in the background failed")
        with _lock:
            for text in batch:
                _waiting.pop(text, None)


def background_done(timeout: float) -> bool:
    """Wait up to `timeout` seconds for the background encoder; True when it has nothing left."""
    thread = _background
    if thread is not None:
        thread.join(timeout)
    return not _waiting


def text_key(text: str) -> bytes:
    """What a text's vector is kept under: a hash of the model and the text."""
    return hashlib.blake2b(f"{MODEL}\n{text}".encode(), digest_size=16).digest()


class _Kept:
    """The vectors file: one table, key → float16 bytes; written by any number of processes,
    the oldest rows dropped past KEPT_ON_DISK."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def open(cls) -> _Kept | None:
        home = cache_home()
        if home is None:
            return None
        try:
            home.mkdir(parents=True, exist_ok=True)
            kept = cls(home / "vectors.sqlite3")
            with kept._connect() as db:
                db.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
            return kept
        except (OSError, sqlite3.Error) as exc:  # read-only home, full disk: encoded, not kept
            log.debug("could not keep sentence vectors in %s: %s", home, exc)
            return None

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")  # readers never wait for a writer
        return db

    def read(self, keys: list[bytes]) -> dict[bytes, np.ndarray]:
        found: dict[bytes, np.ndarray] = {}
        try:
            db = self._connect()
            try:
                for start in range(0, len(keys), 500):
                    chunk = keys[start:start + 500]
                    rows = db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(chunk))})",
                                      chunk)
                    for key, blob in rows:
                        if len(blob) == DIMENSIONS * 2:
                            found[key] = np.frombuffer(blob, dtype=np.float16)
            finally:
                db.close()
        except sqlite3.Error as exc:
            log.debug("could not read kept sentence vectors: %s", exc)
        return found

    def write(self, made: dict[bytes, np.ndarray]) -> None:
        try:
            db = self._connect()
            try:
                with db:
                    db.executemany("INSERT OR IGNORE INTO vectors VALUES (?, ?)",
                                   [(key, vector.tobytes()) for key, vector in made.items()])
                    # The oldest go past KEPT_ON_DISK (rows are numbered as they come)
                    db.execute("DELETE FROM vectors WHERE rowid <= (SELECT max(rowid) FROM vectors) - ?",
                               (KEPT_ON_DISK,))
            finally:
                db.close()
        except sqlite3.Error as exc:
            log.debug("could not keep sentence vectors: %s", exc)
