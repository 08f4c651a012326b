"""The reader's ratings: "more like this" / "not for me" under each paper of a topic in the
e-mail, the landing page behind those links (GET asks, POST records, undo takes it back), the
manage page's list of them, export and delete; and the store underneath."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from digest.store import Store
from digest.store.ratings import Ratings

from .conftest import fresh_database

pytestmark = [pytest.mark.database]  # on PostgreSQL too (.ci/run)

T0 = datetime(2026, 11, 22, 7, 30, tzinfo=UTC)


def test_one_rating_per_subscriber_and_paper_newest_first_and_forgotten(tmp_path):
    store = Store(fresh_database(tmp_path))
    store.migrate()
    ratings = Ratings(store)
    assert ratings.rate(" Ada@Example.org ", "2611.00001", "KV", 1, T0)
    assert not ratings.rate("ada@example.org", "2611.00001", "KV", 1, T0 + timedelta(hours=1))  # the same again
    assert ratings.rate("ada@example.org", "2611.00002", "KV", -1, T0 + timedelta(hours=2))
    assert ratings.rate("ada@example.org", "2611.00001", "Other", -1, T0 + timedelta(hours=3))  # a changed mind
    assert ratings.rate("bob@example.org", "2611.00001", "KV", 1, T0)
    mine = ratings.of("ADA@example.org")
    assert [(r.paper, r.topic, r.value) for r in mine] == [("2611.00001", "Other", -1), ("2611.00002", "KV", -1)]
    assert mine[0].rated_at == T0 + timedelta(hours=3) and mine[0].subscriber == "ada@example.org"
    with pytest.raises(ValueError):
        ratings.rate("ada@example.org", "2611.00003", "KV", 2, T0)
    assert ratings.remove("ada@example.org", "2611.00002") and not ratings.remove("ada@example.org", "2611.00002")
    assert ratings.forget("ada@example.org") == 1
    assert ratings.of("ada@example.org") == [] and len(ratings.of("bob@example.org")) == 1
