"""Lexical relevance (digest/match/relevance.py) and the judged development set it is measured
on (tests/data/judged/, bench/relevance.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ruamel.yaml import YAML

from digest.match.relevance import LexicalIndex, TopicText, standardised

JUDGED = Path(__file__).resolve().parent / "data" / "judged"


@pytest.mark.parametrize("folder", [JUDGED, JUDGED / "held-out"], ids=["development", "held-out"])
def test_the_judged_set_is_whole(folder):
    papers = [json.loads(line) for line in (JUDGED / "papers.jsonl").read_text(encoding="utf-8").splitlines()]
    topics = {t["name"] for t in YAML(typ="safe").load((folder / "topics.yaml").read_text(encoding="utf-8"))}
    judged = [json.loads(line) for part in sorted((folder / "judgements").glob("*.jsonl"))
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
    speech = TopicText("Speech", "Automatic speech recognition and transcription of spoken audio.", ("speech recognition",))
    catch_all = TopicText("Everything", None, ("model",))
    z = standardised(index.scores([speech, catch_all]))
    ranked = list(np.argsort(-z[0]))
    assert ranked[:2] == [0, 3] or ranked[:2] == [3, 0]  # both speech papers first, the ASR false friend below
    assert z[0][2] < z[0][3]
    assert z[1].max() < 4  # a word in nearly every paper lifts none far above the rest


def _papers():  # noqa: ANN202
    from datetime import UTC, datetime, timedelta

    from digest.models import Paper

    now = datetime(2026, 6, 12, tzinfo=UTC)
    texts = [("Whisper goes multilingual: speech recognition for 100 languages",
              "An automatic speech recognition model trained on spoken audio transcribes low-resource languages."),
             ("Streaming transcription on a phone", "We transcribe spoken audio in real time with a small acoustic model."),
             ("Jailbreaks that work", "Our attack raises the ASR (attack success rate) against aligned language models."),
             ("Text-to-speech with emotions", "A speech synthesis model that speaks with the emotion of the text.")]
    texts += [(f"A benchmark for {w}", f"We evaluate language models on {w} and report accuracy.")
              for w in ["tables", "maps", "law", "chemistry", "code", "poetry", "finance", "biology", "chess", "music"]]
    return now, [Paper(id=f"p{n}", title=t, url=f"https://example.org/{n}", abstract=a, first_seen_at=now - timedelta(hours=1))
                 for n, (t, a) in enumerate(texts)]


def _digest(topic: dict):  # noqa: ANN202
    from digest.config import Defaults, Subscriber
    from digest.match.matcher import Matcher

    now, papers = _papers()
    subscriber = Subscriber(email="a@example.org", max_papers=50, topics=[topic])
    return Matcher([subscriber], Defaults(), papers).digest(subscriber, now)


def test_a_described_topic_finds_papers_without_its_keywords_and_drops_false_friends():
    speech = {"name": "Speech", "keywords": ["ASR"],
              "description": "Automatic speech recognition, transcription of spoken audio and speech synthesis."}
    found = {e.paper.id: e.why for s in _digest(speech).sections for e in s.entries}
    assert {"p0", "p3"} <= set(found)  # neither says "ASR"
    assert "p2" not in found  # "ASR" meaning attack success rate: the keyword alone no longer lets it in
    assert found["p3"] == "close to your description"
    keywords_only = {e.paper.id for s in _digest({"name": "Speech", "keywords": ["ASR"]}).sections for e in s.entries}
    assert keywords_only == {"p2"}  # what the keyword alone did


def test_a_description_alone_is_a_topic():
    """No keywords: a sentence on what the reader wants finds the papers that say it, in other
    words too, and leaves out the false friend."""
    speech = {"name": "Speech", "description": "Automatic speech recognition, transcription of spoken audio and speech synthesis."}
    found = {e.paper.id: e.why for s in _digest(speech).sections for e in s.entries}
    assert {"p0", "p3"} <= set(found) and "p2" not in found
    assert set(found.values()) == {"close to your description"}
    assert not {f"p{n}" for n in range(4, 14)} & set(found)  # the benchmarks of other things stay out


def test_sensitivity_lets_in_more_or_fewer():
    def found(sensitivity: int) -> set[str]:
        topic = {"name": "Benchmarks", "keywords": ["benchmark"], "sensitivity": sensitivity,
                 "description": "Benchmarks that evaluate language models on law and finance."}
        return {e.paper.id for s in _digest(topic).sections for e in s.entries}

    fewer, usual, more = found(-3), found(0), found(3)
    assert fewer <= usual <= more and len(fewer) < len(more)


def test_a_catch_all_keyword_no_longer_swallows_the_digest():
    """The issue's case: `model` (in most papers) beside a specific topic. The specific topic's
    papers come first; the catch-all fills what is left."""
    from datetime import UTC, datetime, timedelta

    from digest.config import Defaults, Subscriber
    from digest.match.matcher import Matcher
    from digest.models import Paper

    now = datetime(2026, 6, 12, tzinfo=UTC)
    papers = [Paper(id=f"m{n}", title=f"A model for task {n}", url=f"https://example.org/m{n}",
                    abstract="We train a model and compare the model with other models.",
                    first_seen_at=now - timedelta(hours=1)) for n in range(80)]
    papers += [Paper(id=f"k{n}", title=f"Serving at scale {n}", url=f"https://example.org/k{n}",
                     abstract="We compress the KV cache of long prompts.", first_seen_at=now - timedelta(hours=1))
               for n in range(5)]
    subscriber = Subscriber(email="a@example.org", max_papers=10, topics=[
        {"name": "Everything", "keywords": ["model"]}, {"name": "KV cache", "keywords": ["KV cache"]}])
    digest = Matcher([subscriber], Defaults(), papers).digest(subscriber, now)
    shown = [e.paper.id for s in digest.sections for e in s.entries]
    assert {f"k{n}" for n in range(5)} <= set(shown)  # all five specific papers made the ten
    ranked = sorted((e for s in digest.sections for e in s.entries), key=lambda e: -e.score)
    assert {e.paper.id for e in ranked[:5]} == {f"k{n}" for n in range(5)}  # and they come first


def test_topics_alike_but_for_their_description_are_matched_apart():
    """One subscriber's described topic and another's plain one with the same keywords share
    nothing: each gets what its own settings say (the matcher shares plans between topics)."""
    from digest.config import Defaults, Subscriber
    from digest.match.matcher import Matcher

    now, papers = _papers()
    plain = Subscriber(email="a@example.org", topics=[{"name": "Speech", "keywords": ["ASR"]}])
    described = Subscriber(email="b@example.org", topics=[{"name": "Speech", "keywords": ["ASR"],
                           "description": "Automatic speech recognition and speech synthesis."}])
    fewer = Subscriber(email="c@example.org", topics=[{"name": "Speech", "keywords": ["ASR"], "sensitivity": -3,
                       "description": "Automatic speech recognition and speech synthesis."}])
    matcher = Matcher([plain, described, fewer], Defaults(), papers)
    found = [{e.paper.id for s in d.sections for e in s.entries} for d in matcher.digests([plain, described, fewer], now)]
    alone = [{e.paper.id for s in Matcher([x], Defaults(), papers).digest(x, now).sections for e in s.entries}
             for x in (plain, described, fewer)]
    assert found == alone and found[0] == {"p2"} and "p2" not in found[1] and found[2] <= found[1]


def test_a_not_for_me_lowers_similar_papers_in_the_next_digest(tmp_path):
    """Through the store, as the rating page does: rate, retrain, and the next digest (the
    window `digest send` would match) ranks the papers like the rejected one lower."""
    from datetime import UTC, datetime, timedelta

    from digest.config import Subscriber, load_config
    from digest.match.newly_seen import newly_seen
    from digest.models import Listing, Paper
    from digest.store import Store
    from digest.store.ratings import Ratings
    from digest.subscribe.learning import retrain

    from .conftest import fresh_database
    from .test_deliver import write

    now = datetime.now(UTC)
    store = Store(fresh_database(tmp_path))
    jailbreak = [Paper(id=f"j{n}", title=f"Jailbreak attacks on language models {n}", url=f"https://example.org/j{n}",
                       abstract="We raise the attack success rate of jailbreak prompts against chat models.")
                 for n in range(6)]
    speech = [Paper(id=f"s{n}", title=f"Chain-of-thought reasoning in language models {n}", url=f"https://example.org/s{n}",
                    abstract="Language models solve math problems step by step; we improve chat models' reasoning.")
              for n in range(6)]
    others = [Paper(id=f"o{n}", title=f"Graph networks for chemistry {n}", url=f"https://example.org/o{n}",
                    abstract="Molecules as graphs, message passing and property prediction.") for n in range(40)]
    store.save_listing("test", Listing(tuple([*jailbreak, *speech, *others])), now - timedelta(hours=2))

    config = load_config(write(tmp_path, 25, ["a@example.org"], state=store.engine.url.render_as_string(hide_password=False)))
    subscriber = Subscriber(email="a@example.org", max_papers=50, topics=[
        {"name": "Speech", "keywords": ["language model"], "description": "Research on large language models and chat models."}])

    def scores() -> dict[str, float]:
        _, digests = newly_seen(config, store, [subscriber], now, ledger=None)
        return {e.paper.id: e.score for s in next(digests).sections for e in s.entries}

    before = scores()
    assert {"j2", "j3", "s2", "s3"} <= set(before)  # both kinds are in the topic
    for paper in ("j0", "j1"):
        Ratings(store).rate("a@example.org", paper, "Speech", -1, now)
    Ratings(store).rate("a@example.org", "s0", "Speech", 1, now)
    assert retrain(store, "a@example.org", "Speech", now)
    after = scores()
    assert all(after.get(p, 0.0) < before[p] for p in ("j2", "j3", "j4", "j5"))  # similar ones lower (or out)
    assert all(after[p] >= before[p] - 1e-9 for p in ("s2", "s3") if p in before)  # the liked kind not lower
    for paper in ("j0", "j1", "s0"):
        Ratings(store).remove("a@example.org", paper)
    assert not retrain(store, "a@example.org", "Speech", now)  # no ratings left: no model, as before
    assert scores() == before


def test_a_feed_of_three_papers_has_no_paper_close_by_default():
    """In a pool of three papers every word is common: the best of them by words is not close to
    a topic whose words they lack (the topic's unseen words count in what it could score)."""
    from digest.match.relevance import THRESHOLD, DescriptionScores

    texts = [("Cow urine cures on YouTube: LLMs and health misinformation",
              "A discourse analysis of multilingual video transcripts with large language models."),
             ("Shared lexical task representations explain behavioural variability in LLMs",
              "Large language models are sensitive to prompts; we compare instruction and example prompts."),
             ("Source-modality monitoring in vision-language models",
              "Multimodal language models track whether a piece of information came from the image or the text.")]
    speech = TopicText("Speech and spoken language",
                       "Automatic speech recognition, text-to-speech, speech translation and speech or audio language models.",
                       ("ASR", "speech recognition", "text-to-speech", "spoken language"))
    assert DescriptionScores(texts).of([speech])[0].max() < THRESHOLD
