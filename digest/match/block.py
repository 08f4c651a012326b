"""Digests for a block of subscribers at once: what `Matcher.digest` does for one subscriber,
done for dozens with a few array operations per step, leaving per subscriber only the Python
that builds their sections.

A cell is one (subscriber, paper) of the block, `b * size + paper` (b the subscriber's place in
the block, size the number of papers); a match is one (cell, topic row, value). Keyword topics,
most of them, are evaluated together from the terms' postings; the others one by one
(`TopicPlan.matches`, kept when shared).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from ..config import Subscriber
from ..models import Digest, Section
from .index import ID_BITS, PaperIndex
from .relevance import KEYWORD_BONUS
from .topics import _NO_PAPERS, _NO_WEIGHTS, Settings, TopicPlan, relevance, with_learned
from .weights import CATEGORY_WEIGHT, DESCRIPTION_WEIGHT

if TYPE_CHECKING:
    from .matcher import Matcher

# A block holds about this many (topic, paper) cells: its arrays stay a few MiB however many
# subscribers there are (~8 MiB more at the peak than one by one, on the bench), and are large
# enough that numpy's calls cost little per subscriber (~50 subscribers of 5 topics, 2,000 papers).
BLOCK_CELLS = 1 << 19

Window = tuple[datetime | None, Iterable[str]]
Narrowing = tuple[tuple[str, ...], tuple[int, ...]]  # a keyword topic's categories and excluded terms
Wanted = tuple[int, list[tuple[int, float, tuple[str, ...]]], int]  # a section: see Block.sections
_NO_CELLS = np.zeros(0, dtype=np.intp)


def blocks(subscribers: Iterable[Subscriber], papers: int) -> Iterator[list[Subscriber]]:
    """`subscribers` in order, in blocks of about BLOCK_CELLS cells (at least one subscriber)."""
    block: list[Subscriber] = []
    cells = 0
    for subscriber in subscribers:
        block.append(subscriber)
        cells += max(1, len(subscriber.topics)) * max(1, papers)
        if cells >= BLOCK_CELLS:
            yield block
            block, cells = [], 0
    if block:
        yield block


class Block:
    """A block of subscribers matched together: `digests` equals `Matcher.digest` for each."""

    def __init__(self, matcher: Matcher, subscribers: Sequence[Subscriber], now: datetime,
                 windows: Sequence[Window]) -> None:
        self.matcher, self.index, self.now = matcher, matcher.index, now
        self.subscribers = subscribers
        self.settings = [Settings.of(s, matcher.defaults) for s in subscribers]
        self.since = [since if since is not None else now - settings.lookback
                      for (since, _), settings in zip(windows, self.settings)]
        self.delivered = [delivered for _, delivered in windows]
        self.plans = [[matcher.plan(t) for t in s.topics] for s in subscribers]
        self.rows = max([1, *(len(plans) for plans in self.plans)])  # topic rows of the widest subscriber
        self.cells = len(subscribers) * self.index.size

    def digests(self) -> list[Digest]:
        """`Matcher.digest` of each subscriber of the block, in order."""
        size, subscribers = self.index.size, len(self.subscribers)
        cell, row, paper, raw = self.matches()
        best, best_row = self.best_topics(cell, row, relevance(raw) + self.matcher.base_scores(self.now)[paper])
        eligible = self.eligible()
        matched = ((best > -np.inf) & eligible).nonzero()[0]
        best[matched] = np.round(best[matched], 4)
        trending = self.trending(eligible, best)
        owner = matched // size
        matched_count = np.bincount(owner, minlength=subscribers)
        chosen = self.chosen(best, best_row, matched, matched_count, trending)
        chosen_rows = best_row[chosen]
        per_topic = np.bincount(owner * self.rows + best_row[matched], minlength=subscribers * self.rows)
        sections = self.sections(chosen, chosen_rows, best[chosen], self.also(cell, row, chosen, chosen_rows), per_topic)
        omitted = (matched_count - np.bincount(chosen // size, minlength=subscribers)).tolist()
        return [self.digest(b, sections[b], trending[b], omitted[b]) for b in range(subscribers)]

    # -- all subscribers of the block at once

    def matches(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Every topic's matches: (cell, topic row, paper, raw relevance). A keyword topic may
        name a cell more than once (once per term the paper has), with the same relevance."""
        together: list[tuple[int, int, TopicPlan]] = []
        described: list[tuple[int, int, TopicPlan]] = []
        alone: list[tuple[int, int, TopicPlan]] = []
        for b, plans in enumerate(self.plans):
            for n, plan in enumerate(plans):
                (together if plan.keyword_only else described if plan.closeness_only else alone).append((b, n, plan))
        plans, first = described_plans(self.plans)
        found = evaluate_described(self.index, plans, first)
        for plan, row in zip(plans, found.close):
            plan.hold_closeness(self.index, row)
        parts = [self.keyword_matches(together), self.described_matches(described, plans, found), self.other_matches(alone)]
        cell, row, paper, raw = (np.concatenate(arrays) for arrays in zip(*parts))
        return cell, row, paper, raw

    def described_matches(self, topics: list[tuple[int, int, TopicPlan]], plans: list[TopicPlan],
                          found: Described) -> tuple[np.ndarray, ...]:
        """`matches` of described keyword topics: each subscriber's topic gets its distinct
        plan's matches (`evaluate_described`: those of plan n are found.topic == n)."""
        if not topics:
            return _NO_CELLS, _NO_CELLS, _NO_CELLS, _NO_WEIGHTS
        size = self.index.size
        number = {plan: n for n, plan in enumerate(plans)}
        first = np.searchsorted(found.topic, np.arange(len(plans) + 1))
        which = np.array([number[plan] for _, _, plan in topics], dtype=np.intp)
        counts = first[which + 1] - first[which]
        at = _ranges(first[which], counts)
        cells = np.array([b * size for b, _, _ in topics], dtype=np.intp)
        rows = np.array([row for _, row, _ in topics], dtype=np.intp)
        return np.repeat(cells, counts) + found.paper[at], np.repeat(rows, counts), found.paper[at], found.raw[at]

    def keyword_matches(self, topics: list[tuple[int, int, TopicPlan]]) -> tuple[np.ndarray, ...]:
        """`matches` of keyword topics, from the postings of their terms: each term's postings
        at once, summed per (topic, paper) in a scratch array."""
        size = self.index.size
        topic, paper, added = _keyword_postings(self.index, [plan for _, _, plan in topics])
        slot = topic * size + paper
        sums = self.matcher.scratch(len(topics) * size)
        np.add.at(sums, slot, added)
        raw = sums[slot]
        sums[slot] = 0.0
        narrowed = [plan.narrowed for _, _, plan in topics]
        if any(narrowed):
            narrowing, which = _narrowing(self.index, narrowed)
            raw = raw + narrowing.ravel()[which[topic] * size + paper]
            keep = (raw > -np.inf).nonzero()[0]
            topic, paper, raw = topic[keep], paper[keep], raw[keep]
        first_cell = np.array([b * size for b, _, _ in topics], dtype=np.intp)
        row = np.array([row for _, row, _ in topics], dtype=np.intp)
        return first_cell[topic] + paper, row[topic], paper, raw

    def other_matches(self, topics: list[tuple[int, int, TopicPlan]]) -> tuple[np.ndarray, ...]:
        """`matches` of the other topics, one by one."""
        found = [plan.matches(self.index) for _, _, plan in topics]
        lengths = [len(papers) for papers, _ in found]
        paper = np.concatenate([_NO_PAPERS, *(papers for papers, _ in found)])
        return (np.repeat(np.array([b * self.index.size for b, _, _ in topics], dtype=np.intp), lengths) + paper,
                np.repeat(np.array([row for _, row, _ in topics], dtype=np.intp), lengths),
                paper, np.concatenate([_NO_WEIGHTS, *(raw for _, raw in found)]))

    def best_topics(self, cell: np.ndarray, row: np.ndarray, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(each cell's best value, -inf where nothing matched; the topic row of it, the first
        of equals)."""
        best = np.full(self.cells, -np.inf)
        np.maximum.at(best, cell, value)
        best_row = np.full(self.cells, self.rows, dtype=np.intp)
        top = value == best[cell]
        np.minimum.at(best_row, cell[top], row[top])
        return best, best_row

    def eligible(self) -> np.ndarray:
        """Each cell: first seen within the subscriber's window, and not delivered to them."""
        eligible = np.concatenate([self.matcher.eligible(since, ()) for since in self.since])
        position, size = self.index.position, self.index.size
        gone = [b * size + position[p] for b, delivered in enumerate(self.delivered) for p in delivered if p in position]
        eligible[gone] = False
        return eligible

    def trending(self, eligible: np.ndarray, best: np.ndarray) -> list[list[int]]:
        """Each subscriber's trending papers: the most upvoted that are eligible and matched no topic."""
        wanted = np.array([min(s.trending, s.max_papers) for s in self.settings], dtype=np.intp)
        trending: list[list[int]] = [[] for _ in self.subscribers]
        who = wanted.nonzero()[0]
        if not len(who):
            return trending
        upvoted = self.index.upvoted
        cells = (who * self.index.size)[:, None] + upvoted
        open_ = eligible[cells] & (best[cells] == -np.inf)
        taken = open_ & (np.cumsum(open_, axis=1) <= wanted[who][:, None])
        for b, papers in zip(who.tolist(), _split(upvoted[taken.nonzero()[1]].tolist(), taken.sum(axis=1).tolist())):
            trending[b] = papers
        return trending

    def chosen(self, best: np.ndarray, best_row: np.ndarray, matched: np.ndarray, matched_count: np.ndarray,
               trending: list[list[int]]) -> np.ndarray:
        """The cells in topic sections, subscriber after subscriber, best ranked first (score,
        upvotes, id) and within each subscriber's limits, dropping the lowest ranked."""
        index, size = self.index, self.index.size
        owner = matched // size
        budget = [max(0, s.max_papers - len(t)) for s, t in zip(self.settings, trending)]
        take = np.minimum(budget, matched_count)
        capped = [b for b, s in enumerate(self.settings) if s.max_per_topic is not None]
        take[capped] = 0
        # Only the papers in each subscriber's top score bands (a few dozen) need ranking.
        band = _band(best[matched])
        candidates = (band >= _lowest_band(band, owner, take)[owner]).nonzero()[0]
        keys = index.rank_key(best[matched[candidates]], matched[candidates] % size)
        order = np.lexsort((keys, owner[candidates]))
        keys, owners = keys[order], owner[candidates][order]
        count = np.bincount(owners, minlength=len(take))
        kept = np.arange(len(keys)) - (np.cumsum(count) - count)[owners] < take[owners]
        cells = owners[kept] * size + index.by_id[keys[kept] & ID_BITS]
        if not capped:
            return cells
        chosen = np.split(cells, np.cumsum(take)[:-1])
        ends = np.cumsum(matched_count)
        for b in capped:
            mine = matched[ends[b] - matched_count[b]:ends[b]]
            picked = self._capped(index.rank_key(best[mine], mine - b * size), best_row[mine], budget[b],
                                  self.settings[b].max_per_topic)
            chosen[b] = b * size + np.array(picked, dtype=np.intp)
        return np.concatenate(chosen)

    def _capped(self, keys: np.ndarray, rows: np.ndarray, budget: int, cap: int | None) -> list[int]:
        """`chosen` for a subscriber with at most `cap` papers per topic: their papers' rank
        keys and topic rows."""
        order = np.argsort(keys)
        taken = [0] * self.rows
        picked: list[int] = []
        for i, row in zip(self.index.by_id[keys[order] & ID_BITS].tolist(), rows[order].tolist()):
            if len(picked) == budget:
                break
            if taken[row] < cap:  # type: ignore[operator]
                taken[row] += 1
                picked.append(i)
        return picked

    def also(self, cell: np.ndarray, row: np.ndarray, chosen_cells: np.ndarray,
             chosen_rows: np.ndarray) -> list[tuple[str, ...]]:
        """For each chosen cell, in order, the names of its subscriber's other topics it matched."""
        number = np.full(self.cells, -1, dtype=np.intp)
        number[chosen_cells] = np.arange(len(chosen_cells))
        which = number[cell]
        hit = which >= 0
        which, row = which[hit], row[hit]
        other = row != chosen_rows[which]
        pairs = np.unique(which[other] * self.rows + row[other])  # once each, in order
        others: list[tuple[str, ...]] = [()] * len(chosen_cells)
        size, topics = self.index.size, [s.topics for s in self.subscribers]
        for n, o in zip((pairs // self.rows).tolist(), (pairs % self.rows).tolist()):
            others[n] += (topics[chosen_cells[n] // size][o].name,)
        return others

    def sections(self, chosen: np.ndarray, chosen_rows: np.ndarray, scores: np.ndarray, also: list[tuple[str, ...]],
                 per_topic: np.ndarray) -> list[list[Wanted]]:
        """Each subscriber's topic sections in topic order: (topic row, the entries wanted as
        (paper, score, other topics) best ranked first, how many papers matched the topic).
        Grouped with one stable sort; the wanted made in C (zip), not one by one."""
        size, subscribers = self.index.size, len(self.subscribers)
        section = chosen // size * self.rows + chosen_rows
        order = np.argsort(section, kind="stable")
        wanted = list(zip((chosen % size)[order].tolist(), scores[order].tolist(), [also[n] for n in order.tolist()]))
        keys, starts = np.unique(section[order], return_index=True)
        ends = [*starts[1:].tolist(), len(wanted)]
        first = np.searchsorted(keys, np.arange(subscribers + 1) * self.rows).tolist()
        rows, starts, matched = (keys % self.rows).tolist(), starts.tolist(), per_topic[keys].tolist()
        return [[(rows[k], wanted[starts[k]:ends[k]], matched[k]) for k in range(first[b], first[b + 1])]
                for b in range(subscribers)]

    # -- one subscriber

    def digest(self, b: int, chosen: list[Wanted], trending: list[int], omitted: int) -> Digest:
        """Subscriber b's digest from their `sections`, trending papers and papers left out."""
        subscriber, plans = self.subscribers[b], self.plans[b]
        topics = subscriber.topics
        sections = [Section(topics[row].name, plans[row].entries(self.index, wanted), matched - len(wanted))
                    for row, wanted, matched in chosen]
        if trending:
            sections.append(self.matcher.trending_section(trending, self.now))
        return Digest(subscriber.email, subscriber.name, self.now, self.since[b], tuple(sections), omitted)


def described_plans(plans: list[list[TopicPlan]]) -> tuple[list[TopicPlan], int]:
    """The distinct described topics of a block, the described keyword topics (evaluated
    together, `Block.described_matches`) first; and how many of those."""
    distinct = dict.fromkeys([plan for mine in plans for plan in mine if plan.closeness_only])
    first = len(distinct)
    distinct.update(dict.fromkeys(plan for mine in plans for plan in mine if plan.described is not None))
    return list(distinct), first


@dataclass(frozen=True)
class Described:
    """A block's described topics evaluated (`evaluate_described`)."""

    close: np.ndarray  # each plan's closeness to every paper, learned model included
    topic: np.ndarray  # the matches of the described keyword topics: plan (ascending), paper, raw relevance
    paper: np.ndarray
    raw: np.ndarray


def evaluate_described(index: PaperIndex, plans: list[TopicPlan], first: int) -> Described:
    """The described `plans`' closeness to every paper (one sparse product, and one more for the
    learned models among them), and the matches of the first `first` (described keyword topics,
    `TopicPlan._described_matches` for all at once): the papers close enough to be in with the
    keyword bonus (a few per topic), then their keywords' relevance (from the postings, as
    keyword topics), excludes and categories."""
    if not plans:
        return Described(np.zeros((0, index.size)), _NO_CELLS, _NO_CELLS, _NO_WEIGHTS)
    close = index.description_matrix([plan.described for plan in plans if plan.described is not None])
    taught = [n for n, plan in enumerate(plans) if plan.learned is not None]
    if taught:
        models = [plans[n].learned for n in taught]
        probabilities, leanings = index.learned_probabilities(models), index.learned_leanings(models)
        close = close.copy()
        close[taught] = with_learned(close[taught], probabilities, leanings, models)  # type: ignore[arg-type]
    if not first:
        return Described(close, _NO_CELLS, _NO_CELLS, _NO_WEIGHTS)
    size, keyword_plans, near_close = index.size, plans[:first], close[:first]
    threshold = np.array([plan.threshold for plan in keyword_plans])
    topic, paper = (near_close >= (threshold - KEYWORD_BONUS)[:, None]).nonzero()
    # The keywords' relevance of every (topic, paper), summed, read at the candidates
    owner, posted, added = _keyword_postings(index, keyword_plans)
    raw = np.bincount(owner * size + posted, added, minlength=first * size)[topic * size + paper]
    near = near_close[topic, paper] + KEYWORD_BONUS * (raw > 0) >= threshold[topic]
    narrowed = [plan.narrowed for plan in keyword_plans]
    if any(narrowed):
        narrowing, which = _narrowing(index, narrowed)
        allowed = narrowing[which[topic], paper]
        near &= allowed > -np.inf
        raw = raw + allowed
    topic, paper = topic[near], paper[near]
    return Described(close, topic, paper, raw[near] + DESCRIPTION_WEIGHT * near_close[topic, paper])


def _keyword_postings(index: PaperIndex, plans: Sequence[TopicPlan]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every posting of the plans' keyword terms, each term's at once: (the plan's place in
    `plans`, the paper, what the term adds to its relevance)."""
    start, postings, added = index.all_postings()
    terms: list[int] = []
    owners: list[int] = []
    for n, plan in enumerate(plans):
        terms += plan.terms
        owners += [n] * len(plan.terms)
    term = np.array(terms, dtype=np.intp)
    first = start[term]
    lengths = start[term + 1] - first
    at = _ranges(first, lengths)
    return np.repeat(np.array(owners, dtype=np.intp), lengths), postings[at], added[at]


def _narrowing(index: PaperIndex, narrowed: list[Narrowing | None]) -> tuple[np.ndarray, np.ndarray]:
    """What keyword topics' categories and excludes add to each paper's relevance: one row
    per distinct narrowing (CATEGORY_WEIGHT or 0 where the paper is allowed, -inf where
    not); and each topic's row."""
    number: dict[Narrowing | None, int] = {None: 0}
    which = np.array([number.setdefault(criteria, len(number)) for criteria in narrowed], dtype=np.intp)
    narrowing = np.zeros((len(number), index.size))
    for criteria, n in number.items():
        if criteria is not None:
            categories, excludes = criteria
            narrowing[n] = np.where(index.allowed(categories, excludes), CATEGORY_WEIGHT if categories else 0.0, -np.inf)
    return narrowing, which


def _ranges(first: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The concatenation of range(f, f + n) for each f, n."""
    ends = np.cumsum(lengths)
    return np.arange(ends[-1] if len(ends) else 0) + np.repeat(first - (ends - lengths), lengths)


_BAND_BITS = 6  # a score band: 64 ten-thousandths
_BANDS = (20_000 >> _BAND_BITS) + 1  # scores from 0 to 2, as rank keys allow


def _band(scores: np.ndarray) -> np.ndarray:
    """The band of each score (rounded to 4 decimals): a higher band, a higher score."""
    return np.rint(scores * 10_000).astype(np.intp) >> _BAND_BITS


def _lowest_band(band: np.ndarray, owner: np.ndarray, take: np.ndarray) -> np.ndarray:
    """For each subscriber (the `owner` of each band), the lowest band that the best `take`
    of their scores reach into: none of those is below it."""
    counts = np.bincount(owner * _BANDS + band, minlength=len(take) * _BANDS).reshape(len(take), _BANDS)
    from_top = np.cumsum(counts[:, ::-1], axis=1)
    return _BANDS - 1 - (from_top < take[:, None]).sum(axis=1)


def _split(values: list[int], counts: list[int]) -> Iterator[list[int]]:
    """`values` in consecutive slices of `counts`."""
    start = 0
    for count in counts:
        yield values[start:start + count]
        start += count

