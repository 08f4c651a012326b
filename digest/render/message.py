"""The MIME message: multipart/alternative, text part first, with the headers mail
providers expect of a bulk sender (List-Unsubscribe with one-click, Message-ID, Date)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr

# CRLF line ends, as on the wire; long headers kept whole (RFC 5322 allows 998) so that
# List-Unsubscribe URLs are never folded into encoded-words that clients cannot read.
MESSAGE_POLICY = policy.SMTP.clone(max_line_length=998)


def domain_of(address: str) -> str:
    return parseaddr(address)[1].rpartition("@")[2] or "localhost"


def message_id(sender: str, subscriber: str, key: str) -> str:
    """Stable for one subscriber's one digest: a resend after a crash is recognisably the same."""
    digest = hashlib.sha256(f"{subscriber.lower()}|{key}".encode()).hexdigest()[:24]
    return f"<digest.{digest}@{domain_of(sender)}>"


def list_id(list_name: str, sender: str) -> str:
    """RFC 2919: `NLP Lab Papers <nlp-lab-papers.example.org>`, the label made from the name."""
    label = re.sub(r"[^a-z0-9]+", "-", fold_ascii(list_name).lower()).strip("-") or "digest"
    phrase = '"' + list_name.replace("\\", "").replace('"', "") + '"' if re.search(r'[^\w .-]', list_name) else list_name
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
    message["Content-Language"] = lang
    message.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    message.policy = MESSAGE_POLICY  # and headers written whole
    return message
