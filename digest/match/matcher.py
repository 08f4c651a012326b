"""Match papers to every subscriber's topics, group them, rank them, explain them.

All topics of all subscribers are compiled into one term table, and each paper is scanned
once against it (a dictionary look-up per word, not a search per keyword), giving postings
term → papers. A topic is then a few operations on arrays (keyword topics on their terms'
postings, others on arrays as long as the list of new papers), giving the papers it admits
and their scores, and a subscriber's digest is the best topic per paper and a sort of the few
hundred papers that matched. `digest` makes one subscriber's (the reference); `digests` makes
them a block of a few dozen subscribers at a time, each step one array operation for the whole
block (block.py): memory does not grow with the number of subscribers.

Pure: no I/O, and the clock is an argument.
"""

from __future__ import annotations

import gc
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime

import numpy as np

from ..config import Defaults, Subscriber, Topic
from ..models import Digest, DigestEntry, Paper, Section
from .block import Block, blocks
from .index import PaperIndex, PaperWords
from .relevance import DescriptionScores
from .terms import compile_terms
from .topics import _NO_PAPERS, _NO_WEIGHTS, Settings, TopicPlan, _topic_key, relevance
from .weights import FRESH_HOURS, FRESHNESS, TREND, TREND_FULL_AT

TRENDING = "Trending"


class Matcher:
    """Topics of all subscribers compiled once; papers scanned once; digests made a block at a time."""

    def __init__(self, subscribers: Sequence[Subscriber], defaults: Defaults, papers: Sequence[Paper],
                 words: Sequence[PaperWords] | None = None, pool: DescriptionScores | None = None) -> None:
        self.defaults = defaults
        self.table = compile_terms(subscribers)
        self.index = PaperIndex(papers, self.table, words, pool)
        self._plans: OrderedDict[tuple, TopicPlan] = OrderedDict()
        self._base: tuple[datetime, np.ndarray] | None = None
        self._windows: OrderedDict[datetime, np.ndarray] = OrderedDict()
        self._scratch = np.zeros(0)
        self._trending: tuple[datetime | None, dict[int, DigestEntry]] = (None, {})

    def plan(self, topic: Topic) -> TopicPlan:
        key = _topic_key(topic)
        plan = self._plans.get(key)
        if plan is not None:
            plan.shared = True
            self._plans.move_to_end(key)  # least recently used goes first: a popular topic stays
        else:
            plan = self._plans[key] = TopicPlan(topic, self.table)
            if len(self._plans) > 4096:
                self._plans.popitem(last=False)
        return plan

    def base_scores(self, now: datetime) -> np.ndarray:
        """Trending and freshness part of every paper's score at `now` (the same for everyone)."""
        if self._base is None or self._base[0] != now:
            index = self.index
            trend = np.minimum(1.0, np.log1p(index.upvotes) / np.log1p(TREND_FULL_AT))
            age_hours = np.maximum(0.0, np.nan_to_num(now.timestamp() - index.seen, nan=0.0) / 3600)
            self._base = (now, TREND * trend + FRESHNESS * np.exp(-age_hours / FRESH_HOURS))
        return self._base[1]

    def eligible(self, since: datetime, delivered: Iterable[str]) -> np.ndarray:
        """Papers first seen at or after `since` and never delivered."""
        window = self._windows.get(since)
        if window is None:
            seen = self.index.seen
            window = self._windows[since] = np.isnan(seen) | (seen >= since.timestamp())
            if len(self._windows) > 16:
                self._windows.popitem(last=False)
        position = self.index.position
        gone = [position[p] for p in delivered if p in position]
        if gone:
            window = window.copy()
            window[gone] = False
        return window

    def digest(
        self,
        subscriber: Subscriber,
        now: datetime,
        since: datetime | None = None,
        delivered: Iterable[str] = (),
    ) -> Digest:
        settings = Settings.of(subscriber, self.defaults)
        since = since if since is not None else now - settings.lookback
        index = self.index
        eligible = self.eligible(since, delivered)
        base = self.base_scores(now)
        plans = [self.plan(t) for t in subscriber.topics]

        # Each paper under the topic it matches best (ties: the subscriber's order); whether a
        # paper is eligible does not depend on the topic, so the ineligible are dropped once, at
        # the end. All topics' matches at once: a few numpy calls per subscriber, not per topic.
        evaluated = [plan.matches(index) for plan in plans]
        hit = np.concatenate([_NO_PAPERS, *(papers for papers, _ in evaluated)])  # also without topics
        value = relevance(np.concatenate([_NO_WEIGHTS, *(raw for _, raw in evaluated)])) + base[hit]
        row = np.repeat(np.arange(len(plans)), [len(papers) for papers, _ in evaluated])
        in_topic = np.zeros((len(plans), index.size), dtype=bool)
        in_topic[row, hit] = True
        best = np.full(index.size, -np.inf)
        np.maximum.at(best, hit, value)
        best_topic = np.full(index.size, len(plans), dtype=np.intp)
        top = value == best[hit]
        np.minimum.at(best_topic, hit[top], row[top])
        matched = ((best > -np.inf) & eligible).nonzero()[0]
        best[matched] = np.round(best[matched], 4)

        trending: list[int] = []
        wanted = min(settings.trending, settings.max_papers)  # the section counts within max_papers
        if wanted:
            for i in index.by_upvotes:
                if len(trending) == wanted:
                    break
                if eligible[i] and best[i] == -np.inf:
                    trending.append(i)

        # Rank (score, then upvotes, then id: deterministic) and keep within the limits,
        # dropping the lowest ranked first.
        budget = max(0, settings.max_papers - len(trending))
        keys = index.rank_keys(best, matched)
        if settings.max_per_topic is None:
            if len(matched) > budget:  # only the best `budget` need sorting
                top = np.argpartition(keys, budget - 1)[:budget] if budget else np.empty(0, dtype=np.intp)
                chosen = matched[top[np.argsort(keys[top])]]
            else:
                chosen = matched[np.argsort(keys)]
        else:
            order = matched[np.argsort(keys)]
            taken = [0] * len(plans)
            picked = []
            for i, row in zip(order.tolist(), best_topic[order].tolist()):
                if len(picked) == budget:
                    break
                if taken[row] < settings.max_per_topic:
                    taken[row] += 1
                    picked.append(i)
            chosen = np.array(picked, dtype=np.intp)
        per_topic = np.bincount(best_topic[matched], minlength=len(plans)).tolist()

        kept: list[list[tuple[int, float, tuple[str, ...]]]] = [[] for _ in plans]  # (paper, score, also in)
        names = [topic.name for topic in subscriber.topics]
        in_topics = in_topic[:, chosen].T.tolist()
        for i, row, value, hits in zip(chosen.tolist(), best_topic[chosen].tolist(), best[chosen].tolist(), in_topics):
            also = tuple(name for o, name in enumerate(names) if hits[o] and o != row) if sum(hits) > 1 else ()
            kept[row].append((i, value, also))
        sections = [Section(names[row], plan.entries(index, kept[row]), per_topic[row] - len(kept[row]))
                    for row, plan in enumerate(plans) if kept[row]]
        if trending:
            sections.append(self.trending_section(trending, now))
        omitted = len(matched) - len(chosen)
        return Digest(subscriber.email, subscriber.name, now, since, tuple(sections), omitted)

    def trending_section(self, trending: list[int], now: datetime) -> Section:
        return Section(TRENDING, tuple([self._trending_entry(i, now) for i in trending]), trending=True)

    def _trending_entry(self, i: int, now: datetime) -> DigestEntry:
        """Paper i's entry in a Trending section: the same in every digest made at `now`, made once."""
        if self._trending[0] != now:
            self._trending = (now, {})
        entry = self._trending[1].get(i)
        if entry is None:
            paper = self.index.papers[i]
            entry = self._trending[1][i] = DigestEntry.made(
                paper, round(float(self.base_scores(now)[i]), 4), f"trending: {paper.upvotes} upvotes on Hugging Face", (), ())
        return entry

    def scratch(self, size: int) -> np.ndarray:
        """Zeros, `size` of them, to be left zeros after use: kept from one block of
        subscribers to the next, as writing every page of a new array costs more than the use."""
        if len(self._scratch) < size:
            self._scratch = np.zeros(size)
        return self._scratch[:size]

    def digests(
        self,
        subscribers: Iterable[Subscriber],
        now: datetime,
        window: Callable[[Subscriber], tuple[datetime | None, Iterable[str]]] | None = None,
    ) -> Iterator[Digest]:
        """`digest` for each subscriber, in order: a block of them at a time (block.py), nothing
        kept from one block to the next."""
        # The configuration, the papers and the index outlive the batch: keep the cycle
        # collector from walking them again every few thousand new objects. It is also paused
        # while a block is made (tens of thousands of new objects, none in a cycle, would be
        # walked every 700), never while the caller runs; each block's digests are frozen once
        # made (the collector walked them after every block: 5 % of the bench's time).
        gc.freeze()
        enabled = gc.isenabled()
        try:
            for block in blocks(subscribers, self.index.size):
                windows = [window(s) if window else (None, ()) for s in block]
                gc.disable()
                try:
                    made = Block(self, block, now, windows).digests()
                    gc.freeze()
                finally:
                    if enabled:
                        gc.enable()
                yield from made
        finally:
            gc.unfreeze()
