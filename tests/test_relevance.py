"""Lexical relevance (digest/match/relevance.py) and the judged development set it is measured
on (tests/data/judged/, bench/relevance.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from digest.match.relevance import LexicalIndex, TopicText, standardised

JUDGED = Path(__file__).resolve().parent / "data" / "judged"


def test_the_judged_set_is_whole():
    papers = [json.loads(line) for line in (JUDGED / "papers.jsonl").read_text(encoding="utf-8").splitlines()]
    topics = {t["name"] for t in yaml.safe_load((JUDGED / "topics.yaml").read_text(encoding="utf-8"))}
    judged = [json.loads(line) for part in sorted((JUDGED / "judgements").glob("*.jsonl"))
              for line in part.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(papers) >= 400 and len(topics) >= 8
    assert sorted(j["paper"] for j in judged) == sorted(p["id"] for p in papers)  # each judged once
    assert all(set(j["relevant"]) <= topics for j in judged)
    for topic in topics:  # every topic has papers to find
        assert any(topic in j["relevant"] for j in judged), topic


def test_rare_words_weigh_more_and_the_description_finds_what_keywords_miss():
    texts = [("Speech recognition for low-resource languages", "We train an acoustic model on spoken data."),
             ("A model of models", "This model improves a model with another model."),
             ("Attack success rate of jailbreaks", "We measure the ASR of attacks on language models."),
             ("Whisper fine-tuning", "Transcription of spoken audio improves with adapters.")] + \
            [(f"A model for task {n}", "We propose a model and evaluate the model.") for n in range(20)]
    index = LexicalIndex(texts)
    assert index.idf[index.vocabulary["model"]] < index.idf[index.vocabulary["spoken"]]
    speech = TopicText("Speech", "Automatic speech recognition and transcription of spoken audio.", ["speech recognition"])
    catch_all = TopicText("Everything", None, ["model"])
    z = standardised(index.scores([speech, catch_all]))
    ranked = list(np.argsort(-z[0]))
    assert ranked[:2] == [0, 3] or ranked[:2] == [3, 0]  # both speech papers first, the ASR false friend below
    assert z[0][2] < z[0][3]
    assert z[1].max() < 4  # a word in nearly every paper lifts none far above the rest
