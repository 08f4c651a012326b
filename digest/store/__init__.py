"""Store: the state database (SQLite or PostgreSQL) every stage reads and writes through; the only code that speaks SQL."""

from .database import Store, UTCTime, open_store
from .ledger import Entry, Ledger, SubscriberState

__all__ = ["Entry", "Ledger", "Store", "SubscriberState", "UTCTime", "open_store"]
