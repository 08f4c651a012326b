"""Signed links that need no lookup and give nothing away: the address sealed under the
installation's key.

A token is the subscriber's address encrypted with AES-SIV (deterministic authenticated
encryption, RFC 5297), its purpose bound in as associated data: without the key nobody can
read the address from a URL (proxy and access logs see only noise), nor make a token for
another address or purpose, and the same address always gives the same token, so a link
stays valid in every digest ever sent. Addresses never appear in a URL as they are: spam
filters score links that carry the recipient's address (SpamAssassin's GB_CUSTOM_HTM_URI).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from functools import lru_cache
from urllib.parse import quote

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .email_context import clean_url

UNSUBSCRIBE = "unsubscribe"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@lru_cache(maxsize=8)
def _cipher(secret: str) -> AESSIV:
    key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=b"paper-digest links v2").derive(secret.encode())
    return AESSIV(key)


# A token is written in runs of at most RUN characters with "~" between them. In one run,
# a stretch of 30 or more letters and digits that starts with 1 or 3 reads to SpamAssassin as
# a Bitcoin address (__BITCOIN_ID: +1, and +1 more with "bomb" anywhere in the text, which a
# paper on zip bombs may well say). Written whole, 0.04 % of tokens had one: with a few dozen
# links in a digest, about one digest in fifty. "~" is unreserved in URLs (RFC 3986) and never
# in base64url.
RUN = 24


_URLSAFE = bytes.maketrans(b"+/", b"-_")
_RUNS = re.compile(f".{{1,{RUN}}}")  # a token's runs, cut in C: a digest spells sixty


def _spelled(raw: bytes) -> str:
    return "~".join(_RUNS.findall(binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")))


def seal(secret: str, purpose: str, text: str) -> str:
    """An opaque, unforgeable, stable token for `text`, valid only for `purpose`."""
    return _spelled(_cipher(secret).encrypt(text.encode("utf-8"), [purpose.encode()]))


def unseal(secret: str, purpose: str, token: str) -> str | None:
    """The text sealed in `token` for `purpose`, or None when the token is not genuine.
    Tokens written whole (before the runs) are honoured: digests already sent carry them."""
    if not token or len(token) > 2048 or not token.isascii():
        return None
    try:
        raw = _unb64(token.replace("~", ""))
        if token not in (_spelled(raw), _b64(raw)):  # one spelling per token: no padding, no stray characters
            return None
        return _cipher(secret).decrypt(raw, [purpose.encode()]).decode("utf-8")
    except (InvalidTag, binascii.Error, ValueError, UnicodeDecodeError):
        return None


def unsubscribe_token(secret: str, email: str) -> str:
    return seal(secret, UNSUBSCRIBE, email.strip().lower())


def email_from_token(secret: str, token: str) -> str | None:
    """The address an unsubscribe token was made for, or None when it is not genuine.

    Tokens of the first version (the address in base64, a dot, its HMAC) are still honoured:
    digests already in people's inboxes carry them, and their links must keep working."""
    if token and "." in token:
        return _legacy_email(secret, token)
    email = unseal(secret, UNSUBSCRIBE, token)
    return email or None


def _legacy_email(secret: str, token: str) -> str | None:
    encoded, _, signature = token.partition(".")
    try:
        email = _unb64(encoded).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    expected = _b64(hmac.new(secret.encode(), email.strip().lower().encode(), hashlib.sha256).digest()[:18])
    return email if email and signature and hmac.compare_digest(expected, signature) else None


def unsubscribe_url(base_url: str | None, secret: str, email: str) -> str | None:
    """`{base_url}/unsubscribe/{token}`, or None without a base_url."""
    if not base_url:
        return None
    return f"{base_url.rstrip('/')}/unsubscribe/{unsubscribe_token(secret, email)}"


def unsubscribe_mailto(address: str, email: str) -> str:
    """A mailto: link that asks the sender to unsubscribe `email` (works without a web server)."""
    return f"mailto:{address}?subject={quote('unsubscribe ' + email)}"


# -- the subscription centre's links

CONFIRM = "confirm"
MANAGE = "manage"


def confirm_token(secret: str, signup_id: str) -> str:
    """The link that confirms one sign-up (its row says whether it is still unconfirmed)."""
    return seal(secret, CONFIRM, signup_id)


def signup_from_token(secret: str, token: str) -> str | None:
    return unseal(secret, CONFIRM, token)


def manage_token(secret: str, key: str, generation: int) -> str:
    """A subscriber's manage link of one generation (a fresh link moves the generation on)."""
    return seal(secret, MANAGE, f"{generation}:{key}")


def manage_url(base_url: str, secret: str, key: str, generation: int) -> str:
    """`{base_url}/manage/{token}`: the subscriber's settings page (key: the address trimmed
    and lower-cased)."""
    return f"{base_url.rstrip('/')}/manage/{manage_token(secret, key, generation)}"


def manage_from_token(secret: str, token: str) -> tuple[str, int] | None:
    """(address key, generation) of a genuine manage token, else None."""
    text = unseal(secret, MANAGE, token)
    generation, _, key = (text or "").partition(":")
    return (key, int(generation)) if generation.isdigit() and key else None


# -- the reader's ratings ("more like this" / "not for me" under a paper)
#
# A paper's two links share one token: who (the address key), which paper, under which topic,
# sealed; the rating is the word before it, `/rate/more/<token>` or `/rate/less/<token>`. The
# word is not sealed, and needs not be: whoever holds a card's token holds both its links (they
# are side by side in the e-mail), so changing the word does nothing a click could not. One
# token per card, not per link: half the sealing, a sixth of a digest's rendering.
# The first links had the value sealed in the token (`/rate/<token>`): those still work.

RATE = "rate"  # the first links' purpose: the value sealed in
RATE_PAPER = "rate paper"
RATING_WORDS = {1: "more", -1: "less"}
_RATING_VALUES = {word: value for value, word in RATING_WORDS.items()}


def rating_token(secret: str, key: str, paper_id: str, topic: str, value: int) -> str:
    """A rating of the first links, value sealed in: who (the address key), which paper,
    under which topic, +1 or -1 (new links: `paper_rating_token` and the word)."""
    if value not in (1, -1):
        raise ValueError(f"a rating is +1 or -1, not {value!r}")
    return seal(secret, RATE, f"{value}\n{paper_id}\n{topic}\n{key}")


def paper_rating_token(secret: str, key: str, paper_id: str, topic: str) -> str:
    """Who, which paper, under which topic: the token of a card's two rating links. Lines, not
    JSON: each e-mail carries one per paper, and its size is budgeted."""
    return seal(secret, RATE_PAPER, f"{paper_id}\n{topic}\n{key}")


def rating_from_token(secret: str, token: str, word: str | None = None) -> tuple[str, str, str, int] | None:
    """(address key, paper id, topic, value) of a genuine rating link, else None: `word` is the
    link's more | less, None for the first links (their value sealed in the token)."""
    if word is None:
        value, _, rest = (unseal(secret, RATE, token) or "").partition("\n")
        if value not in ("1", "-1"):
            return None
        rating = int(value)
    else:
        if word not in _RATING_VALUES:
            return None
        rating, rest = _RATING_VALUES[word], unseal(secret, RATE_PAPER, token) or ""
    paper_id, _, rest = rest.partition("\n")
    topic, _, key = rest.rpartition("\n")  # the topic is the one part that might hold a line break
    if not paper_id or not key:
        return None
    return key, paper_id, topic, rating


def rating_url(base_url: str, secret: str, email: str, paper_id: str, topic: str, value: int) -> str:
    """`{base_url}/rate/{more|less}/{token}`: the link that rates a paper for this subscriber."""
    if value not in RATING_WORDS:
        raise ValueError(f"a rating is +1 or -1, not {value!r}")
    token = paper_rating_token(secret, email.strip().lower(), paper_id, topic)
    return f"{base_url.rstrip('/')}/rate/{RATING_WORDS[value]}/{token}"


class RatingLinks:
    """A card's two links, `rating_url` of +1 and of -1, for one subscriber, with what every
    link shares worked out once: a digest carries two per paper, sixty in a full one.
    `plain`: every link is a URL that needs neither cleaning nor escaping (the base URL is;
    a token is of letters, digits, - _ ~)."""

    def __init__(self, base_url: str, secret: str, email: str) -> None:
        self.cipher, self.purpose = _cipher(secret), [RATE_PAPER.encode()]
        self.more, self.less = (f"{base_url.rstrip('/')}/rate/{RATING_WORDS[value]}/" for value in (1, -1))
        self.key = email.strip().lower()
        self.plain = all(clean_url(f"{prefix}x") == f"{prefix}x" and "&" not in prefix for prefix in (self.more, self.less))

    def __call__(self, paper_id: str, topic: str) -> tuple[str, str]:
        token = _spelled(self.cipher.encrypt(f"{paper_id}\n{topic}\n{self.key}".encode(), self.purpose))
        return self.more + token, self.less + token


def address_hash(secret: str, key: str) -> str:
    """A keyed hash of an address: the same for the same address, and no address behind it
    for anyone without the key (what the web's mail records keep)."""
    return _b64(hmac.new(secret.encode(), b"address:" + key.encode(), hashlib.sha256).digest()[:18])
