"""Reading a file a user names (the configuration, a CSV to import, a feed's local path): a
regular file, and at most so many bytes. `/dev/zero` says its size is 0 and never ends, and a
named pipe waits for a writer for ever; neither is read."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

MAX_BYTES = 100_000_000  # far above any configuration or list of subscribers


class NotAFile(OSError):
    """A device, a pipe or a socket where a file was wanted."""


class TooLarge(OSError):
    """A file over the limit it was read with."""


def read_regular(path: Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file `path`; FileNotFoundError, IsADirectoryError, NotAFile or
    TooLarge (each an OSError whose text says what is wrong) otherwise."""
    status = path.stat()
    if stat.S_ISDIR(status.st_mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not stat.S_ISREG(status.st_mode):
        raise NotAFile(f"{path} is not a file (a device, a pipe or a socket)")
    if status.st_size > limit:
        raise TooLarge(f"{path} is {status.st_size:,} bytes, over {limit:,}")
    with path.open("rb") as file:
        body = file.read(limit + 1)  # a file still being written may have grown since
    if len(body) > limit:
        raise TooLarge(f"{path} is over {limit:,} bytes")
    return body
