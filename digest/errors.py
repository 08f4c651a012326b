"""The errors a user can cause, each saying what to do about it.

    DigestError
     ├── ConfigError(ValueError)      the configuration file is wrong (every problem, located)
     ├── UnknownSubscriber(LookupError)  a command named a subscriber that is not configured
     ├── BadArgument(ValueError)      a command's argument cannot be used as given (exit 2, as the above)
     ├── SourceError                  one source could not be fetched or read
     │    ├── FetchError(OSError)     the network or the file system said no
     │    └── ParseError(ValueError)  the document is not what the source type expects
     └── StoreError                   the state database cannot be opened or written
          └── UnusableTarget          a file named to write a copy to must not be written

`str(error)` is one line, fit to print as it is; no user mistake ends in a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass


class DigestError(Exception):
    """Root of every error this package raises on purpose."""

    hint: str = ""

    def __init__(self, message: str, *, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        if hint:
            self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message

    def __reduce__(self) -> tuple:
        # Pickled whole (hint included) whatever a subclass's constructor takes: a template's
        # error comes back from a rendering process (render/processes.py) as it was raised.
        return _restored, (type(self), self.args, self.__dict__)


def _restored(cls: type[DigestError], args: tuple, state: dict) -> DigestError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


@dataclass(frozen=True)
class Problem:
    """One located problem in a configuration file."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(DigestError, ValueError):
    """The configuration has one or more problems; `problems` lists them all."""

    summary: str = ""  # the line after the problems, where "N problems in the configuration" is not it

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        count = len(problems)
        first = str(problems[0]) if problems else "invalid configuration"
        message = first if count == 1 else f"{first} (and {count - 1} more problems)"
        super().__init__(message)


class UnknownSubscriber(DigestError, LookupError):
    """A command named a subscriber the configuration does not have."""


class BadArgument(DigestError, ValueError):
    """A command was given something it cannot use as given: an unknown source, an address
    another origin holds, a file that is not what it should be. The user's to fix (exit 2)."""


class TemplateError(DigestError):
    """A template that cannot be read, parsed or rendered; the message names file and line."""


class SourceError(DigestError):
    """A source failed; `source` names it."""

    def __init__(self, source: str, message: str, *, hint: str = "") -> None:
        self.source = source
        super().__init__(f"{source}: {message}", hint=hint)


class FetchError(SourceError, OSError):
    """The document could not be retrieved (network, HTTP status, file system, size)."""


class ParseError(SourceError, ValueError):
    """The document was retrieved but is not a valid feed of the expected kind."""


class StoreError(DigestError):
    """The state database could not be opened, migrated or written."""


class UnusableTarget(StoreError):
    """A file a command was told to write (a backup) that it must not: the database itself, or
    a file that holds something else. The user's to fix, as a wrong argument is."""
