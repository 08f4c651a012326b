"""Relevance against people's judgements (tests/data/judged/): macro-F1 with the threshold
chosen without looking at the topic being scored (leave one topic out), and precision of the
top 10 per topic, for each way of scoring:

- keywords only: the matcher as it ships (a paper is in when a keyword matches; ranked as the
  digest ranks);
- description: BM25 of name + description + keywords (digest/match/relevance.py), standardised
  per topic;
- description + 3 examples: three of the topic's relevant papers (taken out of the
  evaluation) as positives of a logistic regression on tf-idf, blended with the description;
- description + 50 simulated ratings: 50 papers the reader rated (drawn from the ones the
  description ranks highest, as a reader rates what the digest shows), the same blend.

    python bench/relevance.py [--topics A,B] [--seed 1]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from digest.config import Defaults, Subscriber  # noqa: E402
from digest.match.matcher import Matcher  # noqa: E402
from digest.match.relevance import LexicalIndex, TopicText, standardised  # noqa: E402
from digest.models import Paper  # noqa: E402

JUDGED = ROOT / "tests" / "data" / "judged"
NOW = datetime(2026, 6, 12, tzinfo=UTC)


def load() -> tuple[list[dict], list[dict], dict[str, set[str]]]:
    papers = [json.loads(line) for line in (JUDGED / "papers.jsonl").read_text(encoding="utf-8").splitlines() if line]
    topics = yaml.safe_load((JUDGED / "topics.yaml").read_text(encoding="utf-8"))
    relevant: dict[str, set[str]] = {t["name"]: set() for t in topics}
    judged: set[str] = set()
    for part in sorted((JUDGED / "judgements").glob("*.jsonl")):
        for line in part.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                judged.add(row["paper"])
                for name in row["relevant"]:
                    relevant[name].add(row["paper"])
    papers = [p for p in papers if p["id"] in judged]
    return papers, topics, relevant


def f1(chosen: set[str], truth: set[str]) -> float:
    if not chosen and not truth:
        return 1.0
    hits = len(chosen & truth)
    return 2 * hits / (len(chosen) + len(truth)) if chosen or truth else 0.0


def precision_at(ranked: list[str], truth: set[str], k: int = 10) -> float:
    top = ranked[:k]
    return sum(1 for p in top if p in truth) / max(1, len(top))


def keywords_only(papers: list[dict], topics: list[dict], relevant: dict[str, set[str]]) -> dict:
    items = [Paper(id=p["id"], title=p["title"], url=f"https://example.org/{p['id']}", abstract=p["abstract"],
                   first_seen_at=NOW - timedelta(hours=1)) for p in papers]
    per_topic = {}
    for topic in topics:
        sub = Subscriber(email="judge@example.org", max_papers=500,
                         topics=[{"name": topic["name"], "keywords": topic["keywords"]}])
        digest = Matcher([sub], Defaults(), items).digest(sub, NOW)
        ranked = [e.paper.id for s in digest.sections for e in s.entries]
        per_topic[topic["name"]] = (f1(set(ranked), relevant[topic["name"]]), precision_at(ranked, relevant[topic["name"]]))
    return per_topic


def leave_one_out(z: np.ndarray, ids: list[str], names: list[str], relevant: dict[str, set[str]],
                  excluded: dict[str, set[str]] | None = None) -> dict:
    """Per topic: F1 at the threshold that maximises the other topics' mean F1, and P@10."""
    excluded = excluded or {}
    grid = np.linspace(-1.0, 8.0, 91)
    table = np.zeros((len(names), len(grid)))
    for t, name in enumerate(names):
        keep = [i for i, pid in enumerate(ids) if pid not in excluded.get(name, set())]
        truth = relevant[name] - excluded.get(name, set())
        for g, threshold in enumerate(grid):
            table[t, g] = f1({ids[i] for i in keep if z[t, i] >= threshold}, truth)
    per_topic = {}
    for t, name in enumerate(names):
        others = np.delete(table, t, axis=0).mean(axis=0)
        best = int(np.argmax(others))
        keep = [i for i in np.argsort(-z[t]) if ids[i] not in excluded.get(name, set())]
        per_topic[name] = (table[t, best], precision_at([ids[i] for i in keep], relevant[name] - excluded.get(name, set())))
    return per_topic


def report(label: str, per_topic: dict, seconds: float) -> dict:
    scores = np.array([v[0] for v in per_topic.values()])
    p10 = np.array([v[1] for v in per_topic.values()])
    print(f"{label:<34} macro-F1 {scores.mean():.3f}  min {scores.min():.3f}  P@10 {p10.mean():.3f}  ({seconds * 1000:.0f} ms)")
    return {"macro_f1": round(float(scores.mean()), 3), "min_f1": round(float(scores.min()), 3),
            "p_at_10": round(float(p10.mean()), 3), "per_topic": {k: [round(a, 3), round(b, 3)] for k, (a, b) in per_topic.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--per-topic", action="store_true", help="print each topic's F1 and P@10")
    args = parser.parse_args()
    papers, topics, relevant = load()
    ids = [p["id"] for p in papers]
    names = [t["name"] for t in topics]
    print(f"{len(papers)} judged papers, {len(topics)} topics, "
          f"{sum(len(v) for v in relevant.values())} relevant pairs ({', '.join(str(len(relevant[n])) for n in names)})")
    results = {}

    started = time.perf_counter()
    results["keywords only"] = report("keywords only (the matcher)", keywords_only(papers, topics, relevant),
                                      time.perf_counter() - started)

    started = time.perf_counter()
    index = LexicalIndex([(p["title"], p["abstract"]) for p in papers])
    texts = [TopicText(t["name"], t.get("description"), t["keywords"]) for t in topics]
    z = standardised(index.scores(texts))
    results["description"] = report("description (BM25, standardised)", leave_one_out(z, ids, names, relevant),
                                    time.perf_counter() - started)

    if args.per_topic:
        for label, result in results.items():
            print(f"\n{label}")
            for name, (score, p10) in result["per_topic"].items():
                print(f"  {name:<34} F1 {score:.3f}  P@10 {p10:.2f}")
    (ROOT / "bench" / "relevance-latest.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    random.seed(1)
    main()
