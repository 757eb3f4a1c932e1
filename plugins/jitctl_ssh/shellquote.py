"""Shell quoting: where a quoted or substituted region of a command line ends, and what
quoted text means once the quotes are removed.

Rules (POSIX shell, Shell Command Language §2.2 quoting, §2.6.3 command substitution):
- Functions take the whole line and an index, and return the index just past the region's
  end, or -1 when it never ends (the caller reports the line as unreadable). Pure; any input
  is fine.
- A closer inside a region does not count: looking for the `)` of `$(`, a `)` inside a
  double-quoted string or a backtick substitution is skipped; looking for the closing `"`, a
  `"` inside a `$( … )` or a backtick substitution is skipped. A backslash always escapes the
  next character; single quotes hide everything up to the next single quote.
- `ansi_c` decodes bash's `$'…'` text; `unescape_backtick` is the text a backtick
  substitution runs (inside backticks, `\\``, `\\$` and `\\\\` stand for the character).
"""

from __future__ import annotations


def matching(s: str, start: int, open_: str, close: str) -> int:
    """Index just past the `close` that balances the `open_` before `start`, or -1."""
    level, i = 1, start
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "'":
            j = s.find("'", i + 1)
            if j < 0:
                return -1
            i = j + 1
            continue
        end = _region_end(s, i, in_dquote=False)
        if end is not None:
            if end < 0:
                return -1
            i = end
            continue
        if s.startswith(open_, i):
            level += 1
            i += len(open_)
            continue
        if c == close:
            level -= 1
            if level == 0:
                return i + 1
        i += 1
    return -1


def backtick_end(s: str, i: int) -> int:
    """Index just past the backtick closing the substitution whose text starts at `i`."""
    while i < len(s):
        if s[i] == "\\":
            i += 2
            continue
        if s[i] == "`":
            return i + 1
        i += 1
    return -1


def dquote_end(s: str, i: int) -> int:
    """Index just past the `"` closing the double-quoted text that starts at `i`."""
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        end = _region_end(s, i, in_dquote=True)
        if end is not None:
            if end < 0:
                return -1
            i = end
            continue
        i += 1
    return -1


def _region_end(s: str, i: int, *, in_dquote: bool) -> int | None:
    """A nested region starting at `s[i]` (a backtick substitution anywhere; a double-quoted
    string outside double quotes, a `$( … )` inside them): the index just past its end, -1
    when it never ends, None when no such region starts here."""
    if s[i] == "`":
        return backtick_end(s, i + 1)
    if in_dquote:
        return matching(s, i + 2, "(", ")") if s.startswith("$(", i) else None
    return dquote_end(s, i + 1) if s[i] == '"' else None


_C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b",
              "f": "\f", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}  # fmt: skip


def ansi_c(text: str) -> str:
    """The text of bash's `$'...'` quoting: C escapes, \\xHH and octal \\NNN."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c != "\\" or i + 1 >= len(text):
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "x":
            hexdigits = ""
            for d in text[i + 2 : i + 4]:
                if d not in "0123456789abcdefABCDEF":
                    break
                hexdigits += d
            if hexdigits:
                out.append(chr(int(hexdigits, 16)))
                i += 2 + len(hexdigits)
                continue
        elif nxt in "01234567":
            j = i + 1
            while j < min(i + 4, len(text)) and text[j] in "01234567":
                j += 1
            out.append(chr(int(text[i + 1 : j], 8) & 0xFF))
            i = j
            continue
        elif nxt in _C_ESCAPES:
            out.append(_C_ESCAPES[nxt])
            i += 2
            continue
        out.append(c + nxt)  # an unknown escape stays as written
        i += 2
    return "".join(out)


def unescape_backtick(text: str) -> str:
    return text.replace("\\`", "`").replace("\\$", "$").replace("\\\\", "\\")
