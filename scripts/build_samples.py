"""Build feeds from the captures of the Hugging Face Daily Papers page (../shared/seeds).

    python scripts/build_samples.py [../shared/seeds]

The captures hold real titles, abstracts, author counts and upvotes, but no arXiv ids,
author names or categories. Two outputs:

- digest/samples/daily-papers-pages.atom.xml (shipped, read by `digest demo`): only what is
  real, as an Atom feed; each entry links to an arXiv title search, never to a made-up id.
- tests/data/samples/ (test fixtures): an arXiv-style RSS listing, a Hugging Face JSON that
  shares most of its papers with it (merging) and a journal Atom feed, with ids, authors and
  categories made up here, deterministically, and marked as samples. Never shown to users.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from urllib.parse import urlencode
from xml.sax.saxutils import escape

SEEDS = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/seeds")
ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "samples"
SHIPPED = ROOT / "digest" / "samples"
LISTING_DATE = datetime(2026, 11, 20, 5, 0, tzinfo=UTC)  # a Friday, 00:00 US Eastern

FOOTER = re.compile(r"^\s*•\s*(\d+)\s+authors?\s*\n·\s*\n([A-Z][a-z]{2} \d{1,2}(?:, \d{4})?)(?:\s+(\d+))?\s*$", re.M)
JUNK = re.compile(r"^(new|Get trending papers.*|Subscribe.*|Daily Papers|byAK.*|[A-Z][a-z]{2} \d{1,2}|\d+|·)$")
FIRST = ["Ada", "Wei", "Priya", "Lukas", "Sofia", "Kenji", "Amara", "Mateo", "Yuki", "Omar", "Elena", "Jin",
         "Fatima", "Noah", "Ines", "Ravi", "Chloé", "Jonas", "Mei", "Tomás", "Aisha", "Henrik", "Zoë", "Dmitri"]
LAST = ["Nguyen", "Müller", "Okafor", "García", "Tanaka", "Kowalski", "Haddad", "Rossi", "Chen", "Ivanova",
        "Dubois", "Singh", "Andersson", "Moreau", "Kim", "Silva", "O'Brien", "Yilmaz", "Novak", "Park"]
CATEGORY_HINTS = [
    ("cs.CV", r"\b(image|video|visual|vision|pixel|diffusion|3D|camera|segmentation)\b"),
    ("cs.CL", r"\b(language model|LLM|text|translation|token|linguistic|speech|question answering)\b"),
    ("cs.RO", r"\b(robot|manipulation|embodied|locomotion)\b"),
    ("cs.AI", r"\b(agent|reasoning|planning|tool)\b"),
    ("stat.ML", r"\b(Bayesian|posterior|variational|estimator|statistical)\b"),
]


def seed_papers() -> list[dict]:
    papers: list[dict] = []
    for path in sorted(SEEDS.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        footers = list(FOOTER.finditer(text))
        if footers:
            start = 0
            for match in footers:
                lines = [l.strip() for l in text[start:match.start()].splitlines() if l.strip()]
                lines = [l for l in lines if not JUNK.match(l)]
                start = match.end()
                if len(lines) < 2:
                    continue
                abstract_at = max(range(len(lines)), key=lambda i: len(lines[i]))
                if abstract_at == 0:
                    continue
                papers.append({"title": lines[abstract_at - 1], "abstract": lines[abstract_at],
                               "n_authors": int(match.group(1)), "upvotes": int(match.group(3) or 0)})
        else:  # the dense layout: title line, abstract line
            text = re.sub(r"^Subscribe(?=\S)", "", text, flags=re.M)
            lines = [l.strip() for l in text.splitlines() if l.strip() and not JUNK.match(l.strip())]
            for title, abstract in zip(lines[::2], lines[1::2]):
                if len(abstract) > len(title):
                    papers.append({"title": title, "abstract": abstract, "n_authors": 0, "upvotes": None})
    unique: dict[str, dict] = {}
    for paper in papers:
        unique.setdefault(paper["title"].lower(), paper)
    return list(unique.values())


def decorate(index: int, paper: dict) -> dict:
    digest_bytes = hashlib.sha256(paper["title"].encode()).digest()
    n = paper["n_authors"] or 1 + digest_bytes[0] % 6
    paper["authors"] = [f"{FIRST[(digest_bytes[i] + i) % len(FIRST)]} {LAST[(digest_bytes[i + 8] + 3 * i) % len(LAST)]}"
                        for i in range(min(n, 12))]
    paper["id"] = f"2611.{10000 + index:05d}"
    text = f"{paper['title']} {paper['abstract']}"
    cats = [c for c, rx in CATEGORY_HINTS if re.search(rx, text, re.I)]
    paper["categories"] = (cats or ["cs.LG"])[:2] + (["cs.LG"] if "cs.LG" not in cats[:2] else [])
    return paper


def rss(papers: list[dict]) -> str:
    date = format_datetime(LISTING_DATE.astimezone(UTC).replace(hour=5))
    items = []
    for p in papers:
        categories = "".join(f"\n      <category>{c}</category>" for c in p["categories"])
        items.append(f"""    <item>
      <title>{escape(p['title'])}</title>
      <link>https://arxiv.org/abs/{p['id']}</link>
      <description>arXiv:{p['id']}v1 Announce Type: new
Abstract: {escape(p['abstract'])}</description>
      <guid isPermaLink="false">oai:arXiv.org:{p['id']}v1</guid>{categories}
      <pubDate>{date}</pubDate>
      <arxiv:announce_type>new</arxiv:announce_type>
      <dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>
      <dc:creator>{escape(', '.join(p['authors']))}</dc:creator>
    </item>""")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- SAMPLE DATA for paper digest: real titles and abstracts, made-up ids and authors. -->
<rss xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns:dc="http://purl.org/dc/elements/1.1/" version="2.0">
  <channel>
    <title>cs updates on arXiv.org (sample)</title>
    <link>http://rss.arxiv.org/rss/cs.AI+cs.CL+cs.CV+cs.LG</link>
    <description>Sample listing built from Hugging Face Daily Papers captures.</description>
    <language>en-us</language>
    <lastBuildDate>{date}</lastBuildDate>
    <pubDate>{date}</pubDate>
    <skipDays>
      <day>Saturday</day>
      <day>Sunday</day>
    </skipDays>
{chr(10).join(items)}
  </channel>
</rss>
"""


def hf(papers: list[dict]) -> str:
    out = []
    for p in papers:
        first_sentence = re.split(r"(?<=[.!?])\s", p["abstract"], maxsplit=1)[0]
        out.append({
            "paper": {
                "id": p["id"], "title": p["title"], "summary": p["abstract"],
                "authors": [{"name": a, "hidden": False} for a in p["authors"]],
                "publishedAt": LISTING_DATE.strftime("%Y-%m-%dT00:00:00.000Z"),
                "upvotes": p["upvotes"], "ai_summary": first_sentence,
                "ai_keywords": [],
            },
            "title": p["title"], "numComments": p["upvotes"] % 7 if p["upvotes"] else 0,
            "thumbnail": f"https://cdn-thumbnails.huggingface.co/social-thumbnails/papers/{p['id']}.png",
            "publishedAt": LISTING_DATE.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        })
    return json.dumps(out, indent=1, ensure_ascii=False) + "\n"


def atom(papers: list[dict]) -> str:
    entries = []
    for i, p in enumerate(papers):
        doi = f"10.5555/sample.{2026_0000 + i}"
        authors = "".join(f"<author><name>{escape(a)}</name></author>" for a in p["authors"])
        entries.append(f"""  <entry>
    <id>https://doi.org/{doi}</id>
    <title>{escape(p['title'])}</title>
    <link href="https://journal.example.org/articles/{doi}"/>
    <updated>{LISTING_DATE.isoformat()}</updated>
    {authors}
    <summary type="html">&lt;p&gt;{escape(escape(p['abstract']))}&lt;/p&gt;</summary>
  </entry>""")
    return f"""<?xml version="1.0" encoding="utf-8"?>
<!-- SAMPLE DATA for paper digest: real titles and abstracts, made-up DOIs and authors. -->
<feed xmlns="http://www.w3.org/2005/Atom">
  <id>https://journal.example.org/feed</id>
  <title>Journal of Sample Machine Learning (sample)</title>
  <updated>{LISTING_DATE.isoformat()}</updated>
{chr(10).join(entries)}
</feed>
"""


def pages_feed(papers: list[dict]) -> str:
    """Only what the captures hold: title and abstract; the link searches arXiv for the title."""
    entries = []
    for p in papers:
        key = hashlib.sha256(p["title"].encode()).hexdigest()[:16]
        search = "https://arxiv.org/search/?" + urlencode({"query": p["title"], "searchtype": "title"})
        entries.append(f"""  <entry>
    <id>tag:paper-digest.example,2026:daily-papers-page:{key}</id>
    <title>{escape(p['title'])}</title>
    <link href="{escape(search)}"/>
    <summary>{escape(p['abstract'])}</summary>
  </entry>""")
    return f"""<?xml version="1.0" encoding="utf-8"?>
<!-- Real titles and abstracts from captures of the Hugging Face Daily Papers page; no ids or
     authors (the captures have none). Each link searches arXiv for the title. -->
<feed xmlns="http://www.w3.org/2005/Atom">
  <id>tag:paper-digest.example,2026:daily-papers-page</id>
  <title>Hugging Face Daily Papers, captured pages</title>
{chr(10).join(entries)}
</feed>
"""


def main() -> None:
    seeds = seed_papers()
    SHIPPED.mkdir(parents=True, exist_ok=True)
    (SHIPPED / "daily-papers-pages.atom.xml").write_text(pages_feed(seeds), encoding="utf-8")
    papers = [decorate(i, dict(p)) for i, p in enumerate(seeds)]
    with_votes = [p for p in papers if p["upvotes"] is not None]
    without = [p for p in papers if p["upvotes"] is None]
    # The listing: all but 20 voted papers (HF-only) and 15 others (journal-only); HF: all voted ones.
    listing = without[:-15] + with_votes[:-20]
    journal = without[-15:]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "arxiv-listing.rss.xml").write_text(rss(listing), encoding="utf-8")
    (OUT / "hf-daily-papers.json").write_text(hf(with_votes), encoding="utf-8")
    (OUT / "journal.atom.xml").write_text(atom(journal), encoding="utf-8")
    print(f"{len(papers)} papers: listing {len(listing)}, huggingface {len(with_votes)} "
          f"({len(with_votes) - 20} also in the listing), journal {len(journal)}")


if __name__ == "__main__":
    main()
