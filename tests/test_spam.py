"""SpamAssassin's local rules (Debian's spamassassin, `spamassassin -t -L`) score the e-mail
as sent at 0 or below, for digests of 1 to 40 papers, read through `digest preview --format eml`,
and for the subscription centre's notices."""

from __future__ import annotations

import email
import email.policy
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from digest import notice_message
from digest.config import Config, Sender

from .conftest import write_config
from .test_cli import SAMPLES, digest

SPAMASSASSIN = shutil.which("spamassassin")
pytestmark = [pytest.mark.database,  # on PostgreSQL too (.ci/run)
              pytest.mark.skipif(SPAMASSASSIN is None, reason="needs spamassassin (apt-get install spamassassin; .ci/run does)")]


def spam_score(message: bytes) -> tuple[float, str]:
    result = subprocess.run([SPAMASSASSIN, "-t", "-L"], input=message, capture_output=True, timeout=300)
    report = result.stdout.decode("utf-8", "replace")
    found = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+)", report, re.MULTILINE)
    assert found, report[:2000]
    return float(found.group(1)), report[report.find("Content analysis details"):]


@pytest.mark.parametrize("max_papers", [1, 12, 40])
def test_preview_eml_scores_at_most_zero(tmp_path, max_papers):
    sources = [{"name": "arxiv", "type": "arxiv", "categories": ["cs.LG"], "url": str(SAMPLES / "arxiv-listing.rss.xml")},
               {"name": "hf", "type": "huggingface", "url": str(SAMPLES / "hf-daily-papers.json")}]
    extra = f"""    name: Alice
    max_papers: {max_papers}
    trending: 2
    topics:
      - name: Language models
        keywords: [language model, LLM, transformer]
"""
    config = write_config(tmp_path, sources, extra=extra)
    config.write_text(config.read_text().replace("sources:", "base_url: https://digest.example.org\nsources:", 1))
    assert digest("-c", str(config), "fetch").returncode == 0
    out = tmp_path / "digest.eml"
    result = digest("-c", str(config), "preview", "alice@example.org", "--format", "eml", "--out", str(out))
    assert result.returncode == 0, result.stderr
    message = out.read_bytes()
    html = email.message_from_bytes(message, policy=email.policy.default).get_body(("html",)).get_content()
    assert html.count('<h3 class="pt"') == max_papers
    score, report = spam_score(message)
    assert score <= 0, report


@pytest.mark.no_postgresql
@pytest.mark.parametrize("kind,reason", [("confirm", "asked"), ("manage", "already")])
def test_notices_score_at_most_zero(kind, reason):
    config = Config(sender=Sender(**{"from": "Paper Digest <digest@example.org>", "reply_to": "admin@example.org",
                                     "list_name": "NLP Lab Papers"}), base_url="https://digest.example.org")
    now = datetime.now(UTC)
    message = notice_message(config, kind, "alice@example.org",
                             "https://digest.example.org/subscription/confirm/Zk3lQm0aB9xYq2Wv7tR1uHc",
                             now=now, expires=now + timedelta(hours=48), reason=reason)
    score, report = spam_score(message.as_bytes())
    assert score <= 0, report
