"""Closeness in meaning (digest/match/semantic.py, encoder.py): the numpy encoder against the
reference implementation, vectors kept once per text across processes, and scoring by words
alone when the model's files are missing."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from digest.match import semantic
from digest.match.relevance import WORDS_ONLY_SCALE, DescriptionScores, LexicalIndex, TopicText

REFERENCE = Path(__file__).resolve().parent / "data" / "minilm-reference.json"
ROOT = Path(__file__).resolve().parents[1]


def test_the_encoder_agrees_with_sentence_transformers():
    """Vectors made by sentence-transformers (torch, float32 weights) for four abstracts and six
    topic names: ours, from the int8 weights in numpy, point the same way."""
    reference = json.loads(REFERENCE.read_text(encoding="utf-8"))
    ours = semantic.encoder().encode(reference["texts"], max_tokens=semantic.MAX_TOKENS)
    cosines = np.sum(ours * np.array(reference["vectors"], dtype=np.float32), axis=1)
    assert cosines.min() > 0.995, cosines
    # and not by accident: two different texts are far apart
    assert float(ours[0] @ ours[4]) < 0.5


def test_close_in_meaning_whatever_the_words():
    vectors = semantic.vectors([
        "Automatic speech recognition: transcribing spoken audio",
        "A conformer acoustic model lowers word error rates on LibriSpeech",
        "Jailbreak prompts raise the attack success rate against aligned chatbots",
    ])
    assert vectors.shape == (3, semantic.DIMENSIONS)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    speech = vectors[0]
    assert speech @ vectors[1] > speech @ vectors[2] + 0.2


def test_each_text_is_encoded_once_and_kept_for_other_processes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    texts = ["Speculative decoding with a draft model", "KV-cache eviction for long contexts", "Speculative decoding with a draft model"]
    made = semantic.vectors(texts)
    assert np.allclose(made[0], made[2])
    kept = tmp_path / "paper-digest" / "vectors.sqlite3"
    with sqlite3.connect(kept) as db:
        assert db.execute("SELECT count(*) FROM vectors").fetchone()[0] == 2  # the same text kept once
    # Another process reads what this one kept, without even loading the model.
    script = f"""
import json, sys
from digest.match import semantic
found = semantic.vectors({json.dumps(texts)})
assert "digest.match.encoder" not in sys.modules and "tokenizers" not in sys.modules, "the model was loaded"
print(json.dumps(found.tolist()))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert np.allclose(np.array(json.loads(result.stdout)), made, atol=1e-6)


def test_a_cache_folder_that_cannot_be_written_changes_nothing(tmp_path, monkeypatch):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    texts = ["Retrieval-augmented generation over private documents"]
    assert np.allclose(semantic.vectors(texts), semantic.encoder().encode(texts), atol=2e-3)


def test_without_the_model_files_topics_are_scored_by_their_words(tmp_path, monkeypatch, caplog):
    texts = [("Speech recognition for low-resource languages", "We train an acoustic model on spoken data."),
             ("Jailbreaks", "Attack success rate (ASR) of prompts against chatbots.")]
    topic = TopicText("Speech", "Automatic speech recognition of spoken audio.", ("speech recognition",))
    with_meaning = DescriptionScores(texts).of([topic])[0]
    monkeypatch.setattr(semantic, "MODEL_FOLDER", tmp_path)
    semantic.encoder.cache_clear()
    try:
        assert not semantic.available()
        assert "scored by their words alone" in caplog.text
        words_only = DescriptionScores(texts).of([topic])[0]
    finally:
        semantic.encoder.cache_clear()
    assert LexicalIndex(texts).scores([topic])[0][1] == 0  # no word in common with the jailbreak paper
    assert list(words_only) == [pytest.approx(WORDS_ONLY_SCALE), 0.0]  # the best paper's words, scaled
    assert not np.allclose(words_only, with_meaning)


@pytest.mark.database
def test_the_daemon_encodes_the_papers_a_fetch_brought(tmp_path, monkeypatch):
    """`digest run` encodes new papers right after a fetch, so the digests due later find their
    vectors kept; papers seen before that fetch are left alone."""
    from datetime import UTC, datetime, timedelta

    from digest.daemon import encode_new_papers
    from digest.models import Listing, Paper
    from digest.store import Store

    from .conftest import fresh_database

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    now = datetime.now(UTC)
    store = Store(fresh_database(tmp_path))
    try:
        old = Paper(id="2601.00001", title="An old paper", url="https://example.org/old", abstract="Seen yesterday.")
        new = [Paper(id=f"2612.0000{n}", title=f"Speculative decoding, part {n}", url=f"https://example.org/{n}",
                     abstract="A draft model proposes tokens that the large model verifies.") for n in range(3)]
        store.save_listing("feed", Listing((old,)), now - timedelta(days=1))
        store.save_listing("feed", Listing(tuple(new)), now)
        assert encode_new_papers(store, now - timedelta(minutes=1)) == 3
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "cache" / "paper-digest" / "vectors.sqlite3") as db:
        kept = {row[0] for row in db.execute("SELECT key FROM vectors")}
    assert {semantic.text_key(semantic.paper_text(p.title, p.abstract)) for p in new} <= kept
    assert semantic.text_key(semantic.paper_text(old.title, old.abstract)) not in kept


def test_a_page_never_waits_for_the_papers_to_be_encoded(tmp_path, monkeypatch):
    """The manage page's pool (not waiting): by words alone while the papers are encoded in the
    background, then, read again, in meaning too."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    texts = [(f"Text-to-speech voices, study {n}", "A speech synthesis model that speaks with emotion.") for n in range(3)]
    texts += [(f"Jailbreaks, study {n}", "Our attack raises the ASR (attack success rate) of prompts.") for n in range(3)]
    topic = TopicText("Speech", "Automatic speech recognition and speech synthesis.", ("ASR",))
    first = DescriptionScores(texts, wait_for_meaning=False)
    assert first.paper_vectors is None  # not kept yet: words alone, at once
    words_only = first.of([topic])[0]
    assert semantic.background_done(timeout=120)
    later = DescriptionScores(texts, wait_for_meaning=False).of([topic])[0]
    assert np.allclose(later, DescriptionScores(texts).of([topic])[0])  # as a send would score them
    assert later[:3].min() > later[3:].max()  # in meaning, speech before the attack-success-rate papers
    assert not np.allclose(later, words_only)


def test_the_test_datas_vectors_are_the_encoders():
    """tests/data/vectors.sqlite3 (the vectors sessions start with, conftest.py) holds what the
    encoder makes of the test data today: a changed model or text would be encoded afresh."""
    from .test_relevance import _papers

    _, papers = _papers()
    texts = [semantic.paper_text(p.title, p.abstract) for p in papers[:6]]
    with sqlite3.connect(REFERENCE.with_name("vectors.sqlite3")) as db:
        rows = dict(db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(texts))})",
                               [semantic.text_key(text) for text in texts]).fetchall())
    assert len(rows) == len(texts), ("regenerate tests/data/vectors.sqlite3: run the suite with DIGEST_TEST_CACHE=<folder> "
                                      "and copy <folder>/paper-digest/vectors.sqlite3")
    kept = np.array([np.frombuffer(rows[semantic.text_key(text)], dtype=np.float16) for text in texts], dtype=np.float32)
    fresh = semantic.encoder().encode(texts, max_tokens=semantic.MAX_TOKENS)
    assert np.allclose(np.sum(kept * fresh, axis=1) / np.linalg.norm(kept, axis=1), 1.0, atol=1e-3)


def test_the_vectors_file_keeps_the_newest(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(semantic, "KEPT_ON_DISK", 2)
    texts = ["Mixture-of-experts routing", "Sparse attention kernels", "Diffusion transformers for video"]
    for text in texts:
        semantic.vectors([text])
    with sqlite3.connect(tmp_path / "paper-digest" / "vectors.sqlite3") as db:
        kept = {row[0] for row in db.execute("SELECT key FROM vectors")}
    assert kept == {semantic.text_key(text) for text in texts[1:]}  # the oldest went
