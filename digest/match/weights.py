"""The weights of relevance and rank, in one place to read and tune."""

TITLE, ABSTRACT = 1, 2  # where a term occurs, as bits

# Relevance: a title hit weighs three abstract hits (a term the abstract repeats weighs up to
# 2.5), a phrase one and a half words, a followed author three, a category half; the sum saturates (1 - e^(-sum/2.5)) so that more distinct terms
# always help but never without bound. Score = 0.7 relevance + 0.2 trending + 0.1 freshness.
TITLE_WEIGHT, ABSTRACT_WEIGHT, REPEAT_WEIGHT = 3.0, 1.0, 0.5  # a term said again in the abstract: +0.5, up to 4 times
_ONE_MORE, _COUNT_CAP = 4, 63 * 4  # postings keep TITLE|ABSTRACT in bits 0-1, abstract mentions above (uint8)
_FIELD_BITS = {None: TITLE | ABSTRACT, "title": TITLE, "abstract": ABSTRACT}
PHRASE_WEIGHT, AUTHOR_WEIGHT, CATEGORY_WEIGHT, SATURATION = 1.5, 3.0, 0.5, 2.5
RELEVANCE, TREND, FRESHNESS = 0.70, 0.20, 0.10
# A described topic: how close a paper is to its words (0 to about 1, relevance.py) adds up to a
# title hit and an abstract hit to its relevance.
DESCRIPTION_WEIGHT = 4.0
TREND_FULL_AT, FRESH_HOURS = 200, 72.0
