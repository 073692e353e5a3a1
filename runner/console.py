"""What the console can show: colour only on a terminal and never under NO_COLOR, the terminal's
width, ANSI codes stripped, text from records made safe to print, long text elided, tables fitted
to the width (rich)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import click

# CSI sequences (colours, cursor moves, erase) and OSC sequences (titles, hyperlinks).
ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")
DEFAULT_WIDTH = 100
MIN_WIDTH = 40


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


def safe(text: object, keep: str = "") -> str:
    """Text from a record, an events file or a log, made safe to print: every character Unicode does not
    call printable (C0 and C1 controls: ESC, so CSI and OSC; BEL, CR, DEL; bidi and other format
    characters) is shown as its escape (\\x1b, \\u202e), so nothing read from a file can drive the
    terminal; `keep` names the few controls a caller passes through (newline and tab for a log). An
    allowlist: what is not known to be printable is escaped."""
    text = text if isinstance(text, str) else str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c in keep else c.encode("unicode_escape").decode("ascii") for c in text)


def is_terminal(stream=None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def color_enabled(stream=None) -> bool:
    """Colour on a terminal only, and never when NO_COLOR is set to anything non-empty (no-color.org)."""
    return not os.environ.get("NO_COLOR") and is_terminal(stream)


def style(text: str, err: bool = False, **kw) -> str:
    """click.style, or the plain text where colour is off for that stream."""
    return click.style(text, **kw) if color_enabled(sys.stderr if err else sys.stdout) else text


def width(stream=None) -> int:
    """Columns to fit: COLUMNS if set, else the terminal the stream is on, else the terminal of
    stdin (`recipe run ... | tail` from a shell), else DEFAULT_WIDTH (CI, a file)."""
    cols = os.environ.get("COLUMNS", "")
    if cols.isdigit() and int(cols) > 0:
        return max(MIN_WIDTH, int(cols))
    stream = stream or sys.stderr
    for get_fd in (stream.fileno, sys.stdin.fileno):
        try:
            size = os.get_terminal_size(get_fd()).columns
        except (OSError, ValueError, AttributeError):
            continue
        if size > 0:
            return max(MIN_WIDTH, size)
    return DEFAULT_WIDTH


def elide(text: str, limit: int) -> str:
    """text cut to limit characters, its end replaced by `…` where cut."""
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + "…"


def wrap(text: str, limit: int, indent: int = 0) -> list[str]:
    """text in lines of at most limit characters, continuation lines indented by indent spaces;
    breaks at spaces only, so a path or command word stays whole (and may overrun)."""
    import textwrap

    limit = max(limit, indent + 10)
    return textwrap.wrap(text, limit, subsequent_indent=" " * indent, break_long_words=False,
                         break_on_hyphens=False) or [""]


def table(head: Sequence[str], rows: Iterable[Sequence[object]], columns: int | None = None,
          no_wrap: Sequence[str] = (), min_width: dict[str, int] | None = None, right: Sequence[str] = (),
          err: bool = False, colours: dict[str, str] | None = None, show_header: bool = True, gap: int = 1) -> str:
    """Rows as a table fitted to `columns` (default: width() of stdout, or of stderr where `err`), by rich:
    a cell too wide for its column wraps inside it, and a word longer than the column is folded, never
    cut. Every cell goes through safe() and is rich Text, never markup, so a record's `[bold]` or ESC
    prints as itself. Columns named in `no_wrap` keep one line (ids a reader copies) while the others
    make room; a column in `min_width` is never narrower (a word such as "succeeded" is not folded);
    those in `right` are right-justified (numbers). No box characters, and colour only where
    color_enabled() for the stream: a cell whose whole text is a key of `colours` gets that colour
    (a status word); pipes, logs and tests read plain text."""
    import io

    try:
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text
    except ImportError:   # the miles base image under pyxis may lack rich: columns padded, not fitted
        return _padded([head] * show_header + [[safe(c) for c in row] for row in rows], right, head, gap)
    stream = sys.stderr if err else sys.stdout
    colour = bool(colours) and color_enabled(stream)
    t = Table(box=None, pad_edge=False, padding=(0, gap, 0, 0), show_edge=False, header_style=None, expand=False,
              show_header=show_header)
    for h in head:
        t.add_column(h, overflow="fold", no_wrap=h in no_wrap, min_width=(min_width or {}).get(h),
                     justify="right" if h in right else "left")
    for row in rows:
        t.add_row(*(Text(safe(c), style=(colours or {}).get(str(c), "") if colour else "") for c in row))
    out = io.StringIO()
    Console(file=out, width=columns or width(stream), color_system="standard" if colour else None,
            force_terminal=colour, highlight=False, markup=False, emoji=False, legacy_windows=False).print(t)
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines())


def _padded(rows: list[Sequence[str]], right: Sequence[str], head: Sequence[str], gap: int) -> str:
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(len(head))]
    lines = [(" " * gap).join(c.rjust(w) if h in right else c.ljust(w)
                              for c, w, h in zip(r, widths, head, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def cache_dir() -> Path:
    """Where the console puts full texts it elided when there is no run directory to hold them."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "recipe-bundle"


def save_full_text(relpath: str, text: str) -> Path | None:
    """text written (atomically) under cache_dir(); None if it cannot be written (the caller then
    says where else the text can be had)."""
    from runner.atomicfile import write_text_atomic

    path = cache_dir() / relpath
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, text)
    except (OSError, RuntimeError):
        return None
    return path
