"""Reading the files of a run directory someone else may have made (run.json, plan.json, events,
logs, metrics.jsonl): the one way every verb opens them.

    with open_regular(run_dir / "events" / "main.jsonl", root=run_dir, limit=EVENTS_MAX) as f: ...
    data = read_regular(run_dir / "run.json", root=run_dir, limit=RECORD_MAX)

Only a regular file is read: a FIFO would hang the reader and /dev/zero would fill its memory. A
name that is a link may point only inside `root` (the run directory the user named), so a received
directory cannot make a verb read, or print, a file of the reader's elsewhere. A file larger than
`limit` is refused before any of it is read. Each refusal is one UsageError line naming the file.
A missing file raises FileNotFoundError as open() does: whether that is an error is the caller's.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from runner.errors import UsageError

RECORD_MAX = 16 << 20     # run.json, plan.json: tens of kB in practice
METRICS_MAX = 1 << 30     # metrics.jsonl, a reference: a value per line, read whole
EVENTS_MAX = 16 << 30     # an events or log file, read line by line
LINE_MAX = 1 << 20        # one line of an events or log file; miles' are a few kB

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def open_regular(path: str | os.PathLike, root: str | os.PathLike | None = None, limit: int = RECORD_MAX,
                 what: str = "file") -> BinaryIO:
    """`path` opened for reading in binary, once it is known to be a regular file of at most `limit`
    bytes that (when `root` is given) resolves inside `root`."""
    from runner.console import safe

    path = Path(path)
    if root is not None:
        real, inside = path.resolve(), Path(root).resolve()
        if not real.is_relative_to(inside):
            raise UsageError(f"{safe(path)}: a link to {safe(real)}, outside {safe(inside)}; "
                             f"a run's files are read only from inside its directory")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as e:
        raise UsageError(f"{safe(path)}: cannot read ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((word for test, word in _KINDS if test(st.st_mode)), "not a plain file")
            raise UsageError(f"{safe(path)}: {kind}, not a regular file; a run's {what} is read only from a "
                             "regular file")
        if st.st_size > limit:
            raise UsageError(f"{safe(path)}: {st.st_size} bytes, larger than the {limit >> 20} MiB a {what} may be")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, root: str | os.PathLike | None = None, limit: int = RECORD_MAX,
                 what: str = "file") -> bytes:
    """The bytes of `path`, under open_regular's rules; a file that grew past `limit` while being read
    is refused too."""
    from runner.console import safe

    with open_regular(path, root, limit, what) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{safe(path)}: larger than the {limit >> 20} MiB a {what} may be")
    return data


def read_lines(f: BinaryIO, limit: int = LINE_MAX):
    """(line number, text or None) for each line of a binary file, decoded as UTF-8 with replacement;
    None for a line longer than `limit` bytes, which is skipped without being held in memory."""
    n = 0
    while True:
        raw = f.readline(limit + 1)
        if not raw:
            return
        n += 1
        if len(raw) > limit and not raw.endswith(b"\n"):
            while (more := f.readline(limit)) and not more.endswith(b"\n"):
                pass
            yield n, None
            continue
        yield n, raw.decode("utf-8", errors="replace")
