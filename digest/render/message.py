"""The MIME message: multipart/alternative, text part first, with the headers mail
providers expect of a bulk sender (List-Unsubscribe with one-click, Message-ID, Date).

`wire_message` writes the bytes that go to the server directly (headers, two quoted-printable
parts): the email package's object model took ~2 ms per message, more than rendering it.
`build_message` builds the same message with the email package; a test parses both and
compares every header and part."""

from __future__ import annotations

import binascii
import hashlib
import os
import re
import unicodedata
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache

# CRLF line ends, as on the wire; long headers kept whole (RFC 5322 allows 998) so that
# List-Unsubscribe URLs are never folded into encoded-words that clients cannot read.
MESSAGE_POLICY = policy.SMTP.clone(max_line_length=998)


@lru_cache(maxsize=64)  # the sender's: the same in every message
def domain_of(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "localhost"


def message_id(sender: str, subscriber: str, key: str) -> str:
    """Stable for one subscriber's one digest: a resend after a crash is recognisably the same."""
    digest = hashlib.sha256(f"{subscriber.lower()}|{key}".encode()).hexdigest()[:24]
    return f"<digest.{digest}@{domain_of(sender)}>"


def list_id(list_name: str, sender: str) -> str:
    """RFC 2919: `NLP Lab Papers <nlp-lab-papers.example.org>`, the label made from the name;
    the header's value as it goes on the wire (ASCII). A name with other characters is one run
    of encoded words, never inside quotes (RFC 2047 §5: a quoted "Lab Papers ✨" was sent as
    `"Lab Papers =?utf-8?q?=E2=9C=A8=22?=`, the closing quote encoded)."""
    label = re.sub(r"[^a-z0-9]+", "-", fold_ascii(list_name).lower()).strip("-") or "digest"
    if not list_name.isascii():
        phrase = " ".join(_q_word(_one_line(list_name)))
    elif re.search(r'[^\w .-]', list_name):
        phrase = '"' + list_name.replace("\\", "").replace('"', "") + '"'
    else:
        phrase = list_name
    return f"{phrase} <{label}.{domain_of(sender)}>"


def fold_ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")


def build_message(*, sender: str, reply_to: str | None, to: str, to_name: str | None, subject: str,
                  text: str, html: str, date: datetime, msg_id: str, unsubscribe_url: str | None,
                  unsubscribe_mailto: str | None, lang: str = "en", list_name: str = "Paper digest") -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)  # bodies encoded in lines of 76
    message["From"] = sender
    message["To"] = formataddr((to_name or "", to))
    if reply_to:
        message["Reply-To"] = reply_to
    message["Subject"] = subject
    message["Date"] = format_datetime(date)
    message["Message-ID"] = msg_id
    message["List-Id"] = list_id(list_name, sender)
    targets = [f"<{u}>" for u in (unsubscribe_url, unsubscribe_mailto) if u]
    if targets:
        message["List-Unsubscribe"] = ", ".join(targets)
    if unsubscribe_url and unsubscribe_url.startswith("https://"):
        message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation reply to a digest
    message["Content-Language"] = lang
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    message.policy = MESSAGE_POLICY  # and headers written whole
    return message


def wire_message(*, sender: str, reply_to: str | None, to: str, to_name: str | None, subject: str,
                 text: str, html: str, date: datetime, msg_id: str, unsubscribe_url: str | None,
                 unsubscribe_mailto: str | None, lang: str = "en", list_name: str = "Paper digest") -> bytes:
    """The message as it goes on the wire (CRLF line ends, bodies in lines of at most 76)."""
    # The boundary has "=_", which quoted-printable never writes (a literal "=" is "=3D").
    boundary = f"=_digest_{os.urandom(12).hex()}"
    headers = [
        ("From", _address_header(sender)),
        ("To", _mailbox(to_name, to)),
        *([("Reply-To", _address_header(reply_to))] if reply_to else []),
        ("Subject", encode_words(subject)),
        ("Date", format_datetime(date)),
        ("Message-ID", _one_line(msg_id)),
        ("List-Id", list_id(list_name, sender)),
    ]
    targets = [f"<{_one_line(u)}>" for u in (unsubscribe_url, unsubscribe_mailto) if u]
    if targets:
        headers.append(("List-Unsubscribe", ", ".join(targets)))
    if unsubscribe_url and unsubscribe_url.startswith("https://"):
        headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))  # RFC 8058
    headers += [("Auto-Submitted", "auto-generated"),  # RFC 3834: no vacation reply to a digest
                ("Content-Language", _one_line(lang)), ("MIME-Version", "1.0"),
                ("Content-Type", f'multipart/alternative; boundary="{boundary}"')]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii")
    return b"".join((
        head, b"\r\n",
        _part(boundary, "plain", text),
        _part(boundary, "html", html),
        f"--{boundary}--\r\n".encode("ascii"),
    ))


def _part(boundary: str, subtype: str, body: str) -> bytes:
    return (f"--{boundary}\r\nContent-Type: text/{subtype}; charset=\"utf-8\"\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode("ascii") + quoted_printable(body) + b"\r\n"


_SEGMENT_END = "</div>"


def quoted_printable(body: str) -> bytes:
    """`body` quoted-printable (RFC 2045), with CRLF line ends and a final one.

    Encoded in pieces, each remembered: a line, and within a long line (a template's HTML is
    mostly one) the text up to each `</div>`, joined by soft line breaks, which decoding
    removes. A paper's card is the same text in every digest it is in, so most of a digest's
    50 KB is looked up rather than encoded again (encoding it whole was a tenth of the send
    path's time)."""
    lines = body.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()  # the body's last line end; one is added below either way
    out = []
    known = _SEGMENTS.get
    for line in lines:
        if len(line) > 200 and _SEGMENT_END in line:
            pieces = line.split(_SEGMENT_END)
            segments = [piece + _SEGMENT_END for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])
            out.append(b"=\r\n".join([known(segment) or _new_segment(segment) for segment in segments]))
        else:
            out.append(known(line) or _new_segment(line))
    return b"\r\n".join(out) + b"\r\n"


_SEGMENTS: dict[str, bytes] = {}
SEGMENTS_KEPT = 65_536


def _new_segment(text: str) -> bytes:
    """A piece not seen before (or not kept): remembered, unless it is a long plain one, as a
    reader's own link is (the text part's rating links: sixty a digest, never seen again)."""
    plain = plain_segment(text)
    if plain is not None and len(text) > 75:
        return plain
    encoded = plain if plain is not None else _encoded_segment(text)
    if len(_SEGMENTS) >= SEGMENTS_KEPT:
        _SEGMENTS.clear()
    _SEGMENTS[text] = encoded
    return encoded


def plain_segment(text: str) -> bytes | None:
    """A piece that quoted-printable writes as it is, cut into lines of 75 and soft line
    breaks (as `_encoded_segment` does); None for any other."""
    if "=" in text or not text.isascii() or not text.isprintable() or text.endswith((" ", ".")):
        return None  # "=" and controls are escaped; a space or a lone "." at a line's end may be
    if len(text) <= 75:
        return text.encode("ascii")
    return b"=\r\n".join([text[i:i + 75].encode("ascii") for i in range(0, len(text), 75)])


def _encoded_segment(text: str) -> bytes:
    """One piece of a line, encoded: lines of at most 76 characters, the last at most 75 so
    that a soft line break may follow it."""
    encoded = binascii.b2a_qp(text.encode("utf-8"), quotetabs=False, istext=True).replace(b"=\n", b"=\r\n")
    start = encoded.rfind(b"\n") + 1
    if len(encoded) - start > 75:  # b2a_qp may end on a full 76: its last character goes to a line of its own
        cut = len(encoded) - 1
        escape = encoded.rfind(b"=", cut - 2, cut)  # never inside an =XX
        cut = escape if escape != -1 else cut
        encoded = encoded[:cut] + b"=\r\n" + encoded[cut:]
    return encoded


def _one_line(value: str) -> str:
    return " ".join(value.split()) if ("\r" in value or "\n" in value) else value


_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")


def _q_word(text: str) -> list[str]:
    """RFC 2047 encoded words for `text`. Q encoding, a new word only before a space (readers
    differ on the space between two encoded words: Python's keeps it in names), so a word may
    pass the RFC's 75 characters, never a line's 998; past that, base64 words split between
    characters."""
    pieces = ["".join("_" if b == 0x20 else chr(b) if b in _Q_SAFE else f"={b:02X}" for b in c.encode("utf-8"))
              for c in text]
    if sum(map(len, pieces)) > 900:
        words, chunk = [], ""
        for char in text:
            if len((chunk + char).encode("utf-8")) > 450:
                words.append(f"=?utf-8?b?{binascii.b2a_base64(chunk.encode('utf-8'), newline=False).decode()}?=")
                chunk = ""
            chunk += char
        words.append(f"=?utf-8?b?{binascii.b2a_base64(chunk.encode('utf-8'), newline=False).decode()}?=")
        return words
    words, current = [], ""
    for char, piece in zip(text, pieces):
        if char == " " and current and len(current) + len(piece) > 75 - len("=?utf-8?q??="):
            words.append(f"=?utf-8?q?{current}?=")
            current = ""
        current += piece
    words.append(f"=?utf-8?q?{current}?=")
    return words


def encode_words(value: str) -> str:
    """An unstructured header's value: ASCII words as they are, each run of words with other
    characters as encoded words (what mail clients decode back to the same text)."""
    value = _one_line(value)
    if value.isascii():
        return value
    out: list[str] = []
    run: list[str] = []
    for word in value.split(" "):
        if word.isascii():
            if run:
                out.extend(_q_word(" ".join(run)))
                run = []
            out.append(word)
        else:
            run.append(word)
    if run:
        out.extend(_q_word(" ".join(run)))
    return " ".join(out)


def _mailbox(name: str | None, address: str) -> str:
    if not name:
        return address
    name = _one_line(name)
    if name.isascii():
        return formataddr((name, address))
    words = _q_word(name)
    if len(words) == 1 or all(w.startswith("=?utf-8?q?") for w in words):
        return f"{' '.join(words)} <{address}>"
    # A very long name: the email package folds it as readers expect (rare; slow is fine here).
    header = EmailMessage(policy=MESSAGE_POLICY)
    header["To"] = formataddr((name, address))
    return header.as_string().split(":", 1)[1].strip()


@lru_cache(maxsize=64)  # From and Reply-To: the same in every message
def _address_header(value: str) -> str:
    name, address = parseaddr(value)
    return _mailbox(name, address) if address else _one_line(value)
