r"""Read back the words a run script's dry run prints with bash's `printf %q`, exactly.

`printf %q` writes a word bare with backslash escapes (`a\ b`, `\~x`), as `''` when empty, and as
ANSI-C `$'...'` when it holds control characters (`$'t\tab'`), or bytes the locale cannot print
(`$'\303\251'` for "é" under LANG=C). Python's shlex knows none of `$'...'`: it reads `$'a\tb'` as
`$a\tb`. This reader follows bash's own rules (the GNU Bash manual, "ANSI-C Quoting" and "Quoting")
and works on bytes, so any byte sequence comes back as it went in; anything it cannot read is an
error, never a guess.
"""

from __future__ import annotations

_SIMPLE = {"a": 0x07, "b": 0x08, "e": 0x1B, "E": 0x1B, "f": 0x0C, "n": 0x0A, "r": 0x0D, "t": 0x09, "v": 0x0B,
           "\\": 0x5C, "'": 0x27, '"': 0x22, "?": 0x3F}
_OCT, _HEX = b"01234567", b"0123456789abcdefABCDEF"


class ShellWordsError(ValueError):
    pass


def _ansi_c(s: bytes, i: int, out: bytearray) -> int:
    """Decode the body of $'...' starting at s[i]; return the index after the closing quote."""
    n = len(s)
    while i < n:
        c = s[i]
        if c == 0x27:  # '
            return i + 1
        if c != 0x5C:  # not a backslash
            out.append(c)
            i += 1
            continue
        if i + 1 >= n:
            break
        e = chr(s[i + 1])
        i += 2
        if e in _SIMPLE:
            out.append(_SIMPLE[e])
        elif s[i - 1] in _OCT:
            j = i - 1
            while j < n and j < i + 2 and s[j] in _OCT:
                j += 1
            out.append(int(s[i - 1:j], 8) & 0xFF)
            i = j
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            j = i
            while j < n and j < i + width and s[j] in _HEX:
                j += 1
            if j == i:  # bash keeps "\x" literally when no hex digit follows
                out += b"\\" + e.encode()
                continue
            v = int(s[i:j], 16)
            i = j
            if e == "x":
                out.append(v)
            else:
                try:
                    out += chr(v).encode("utf-8")
                except (ValueError, UnicodeEncodeError):
                    raise ShellWordsError(f"\\{e}{v:x} is no character") from None
        elif e == "c":
            if i >= n:
                break
            out.append(s[i] & 0x1F)
            i += 1
        else:  # an unknown escape stays as written
            out += b"\\" + s[i - 1:i]
    raise ShellWordsError("unterminated $'...'")


def split(line: bytes | str) -> list[str]:
    """The words of one line of `printf ' %q'` output, as str (undecodable bytes kept by surrogateescape)."""
    s = line.encode("utf-8", "surrogateescape") if isinstance(line, str) else line
    words: list[str] = []
    word = bytearray()
    in_word = False
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c in (0x20, 0x09):  # space, tab: a word ends
            if in_word:
                words.append(word.decode("utf-8", "surrogateescape"))
                word, in_word = bytearray(), False
            i += 1
            continue
        in_word = True
        if c == 0x5C:  # backslash: the next byte literally
            if i + 1 >= n:
                raise ShellWordsError("a trailing backslash")
            word.append(s[i + 1])
            i += 2
        elif c == 0x24 and i + 1 < n and s[i + 1] == 0x27:  # $'
            i = _ansi_c(s, i + 2, word)
        elif c == 0x27:  # '...': everything literal up to the next '
            j = s.find(b"'", i + 1)
            if j < 0:
                raise ShellWordsError("unterminated '...'")
            word += s[i + 1:j]
            i = j + 1
        elif c in b'"`$|&;<>(){}\n*?[':
            # printf %q escapes every one of these; meeting one bare means this is no %q output.
            raise ShellWordsError(f"unquoted {chr(c)!r} at byte {i}")
        else:
            word.append(c)
            i += 1
    if in_word:
        words.append(word.decode("utf-8", "surrogateescape"))
    return words
