"""Deliver: takes rendered e-mails for the digests that are due, sends them over SMTP, and records each in the ledger."""

from .send_run import Delivery, Outcome, summary

__all__ = ["Delivery", "Outcome", "summary"]
