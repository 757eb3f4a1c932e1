"""Shell words: a command line read the way a POSIX shell reads it, without running it.

`Lexer(line, nested, opaque).tokens()` gives words (quote removal done: `'r'm`, `r\\m` and
`$'\\x72m'` are all `rm`) and operators (`"op:;"`, `"op:&&"`, `"op:("`, `"redir:>"`, ...).
It hands the text of every command substitution (`$( … )`, backticks, also inside double
quotes and unquoted here-documents) and process substitution (`<( … )`) to `nested`, and the
reason for anything it cannot read (unbalanced quotes or parentheses) to `opaque`. A word
records whether an expansion made it non-literal (`$VAR`, `$( … )`) and whether unquoted glob
or brace characters could rewrite it. Pure; any input is fine. Where a quoted or substituted
region ends, and what `$'…'` and backtick text mean, is shellquote.py's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from jitctl_ssh.shellquote import ansi_c, backtick_end, matching, unescape_backtick

_OPERATORS = ("&&", "||", ";;", "|&", ";", "&", "|", "\n")
_REDIRECTS = ("<<<", "<<-", "<<", ">>", ">&", "<&", "&>>", "&>", ">|", "<>", "<", ">")


@dataclass
class Word:
    text: str  # after quote removal
    literal: bool  # no expansion in it (a variable or a substitution makes it non-literal)
    quoted: bool = False
    pattern: bool = False  # unquoted glob or brace characters: the shell may rewrite it


class Lexer:
    """Splits a line into words and operators. A substitution's text goes to `nested` as it
    is met (it runs before the command holding it); what cannot be read goes to `opaque`."""

    def __init__(
        self, line: str, nested: Callable[[str], None], opaque: Callable[[str], None]
    ) -> None:
        self.s, self.i = line, 0
        self.nested, self.opaque = nested, opaque
        self.heredocs: list[tuple[str, bool]] = []  # (delimiter, body expands)

    def _dollar(self, buf: list[str]) -> bool:
        """At `$`: consume an expansion; True when it made the word non-literal."""
        s, i = self.s, self.i
        if s.startswith("$((", i):
            level, j = 2, i + 3
            while j < len(s) and level:
                level += {"(": 1, ")": -1}.get(s[j], 0)
                j += 1
            if level:
                self.opaque("unbalanced $((")
                self.i = len(s)
                return True
            inner = s[i + 3 : j - 2]
            if "$(" in inner or "`" in inner:
                Lexer(inner, self.nested, self.opaque).scan_expansions()
            self.i = j
            return True
        if s.startswith("$(", i):
            j = matching(self.s, i + 2, "(", ")")
            if j < 0:
                self.opaque("unbalanced $(")
                self.i = len(s)
                return True
            self.nested(s[i + 2 : j - 1])
            self.i = j
            return True
        if s.startswith("${", i):
            j = matching(self.s, i + 2, "{", "}")
            if j < 0:
                self.opaque("unbalanced ${")
                self.i = len(s)
                return True
            inner = s[i + 2 : j - 1]
            if "$(" in inner or "`" in inner:
                Lexer(inner, self.nested, self.opaque).scan_expansions()
            self.i = j
            return True
        if i + 1 < len(s) and (s[i + 1].isalnum() or s[i + 1] in "_@*#?$!-"):
            j = i + 2
            if s[i + 1].isalpha() or s[i + 1] == "_":
                while j < len(s) and (s[j].isalnum() or s[j] == "_"):
                    j += 1
            self.i = j
            return True
        if s.startswith("$'", i):  # ANSI-C quoting: literal text
            j = i + 2
            while j < len(s) and s[j] != "'":
                j += 2 if s[j] == "\\" else 1
            buf.append(ansi_c(s[i + 2 : j]))
            self.i = j + 1
            return False
        buf.append("$")
        self.i = i + 1
        return False

    def scan_expansions(self) -> None:
        """Only look for substitutions (here-document bodies, ${…} contents)."""
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c == "\\":
                self.i += 2
            elif c == "$":
                self._dollar([])
            elif c == "`":
                j = backtick_end(self.s, self.i + 1)
                if j < 0:
                    self.opaque("unbalanced backtick")
                    return
                self.nested(unescape_backtick(s[self.i + 1 : j - 1]))
                self.i = j
            else:
                self.i += 1

    def word(self) -> Word | None:
        s = self.s
        buf: list[str] = []
        literal, quoted, started, pattern = True, False, False, False
        while self.i < len(s):
            c = s[self.i]
            if c in " \t":
                break
            if c == "\n" or c in ";&|()" or (c in "<>" and not started):
                break
            if c in "<>" and started:
                # `2>file`: the digits before are a file descriptor, not a word
                if "".join(buf).isdigit() and not quoted:
                    self.i -= len("".join(buf))
                    return None
                break
            started = True
            if c == "\\":
                if self.i + 1 < len(s) and s[self.i + 1] != "\n":
                    buf.append(s[self.i + 1])
                self.i += 2
            elif c == "'":
                j = s.find("'", self.i + 1)
                if j < 0:
                    self.opaque("unbalanced single quote")
                    self.i = len(s)
                    return Word("".join(buf), False, True)
                buf.append(s[self.i + 1 : j])
                quoted = True
                self.i = j + 1
            elif c == '"':
                quoted = True
                self.i += 1
                while self.i < len(s) and s[self.i] != '"':
                    d = s[self.i]
                    if d == "\\" and self.i + 1 < len(s) and s[self.i + 1] in '$`"\\\n':
                        buf.append(s[self.i + 1])
                        self.i += 2
                    elif d == "$":
                        if self._dollar(buf):
                            literal = False
                    elif d == "`":
                        j = backtick_end(self.s, self.i + 1)
                        if j < 0:
                            self.opaque("unbalanced backtick")
                            self.i = len(s)
                            return Word("".join(buf), False, True)
                        self.nested(unescape_backtick(s[self.i + 1 : j - 1]))
                        literal = False
                        self.i = j
                    else:
                        buf.append(d)
                        self.i += 1
                if self.i >= len(s):
                    self.opaque("unbalanced double quote")
                    return Word("".join(buf), False, True)
                self.i += 1
            elif c == "$":
                if self._dollar(buf):
                    literal = False
            elif c == "`":
                j = backtick_end(self.s, self.i + 1)
                if j < 0:
                    self.opaque("unbalanced backtick")
                    self.i = len(s)
                    return Word("".join(buf), False)
                self.nested(unescape_backtick(s[self.i + 1 : j - 1]))
                literal = False
                self.i = j
            else:
                pattern = pattern or c in "*?[{"
                buf.append(c)
                self.i += 1
        if not started:
            return None
        return Word("".join(buf), literal, quoted, pattern)

    def tokens(self) -> list[Word | str]:
        out = self._tokens()
        if self.heredocs:  # a here-document whose line never ended: its body is the rest
            self._heredoc_bodies()
        return out

    def _tokens(self) -> list[Word | str]:
        """Words and operators ("op:;", "op:(", "redir:>", ...), here-documents consumed."""
        out: list[Word | str] = []
        s = self.s
        while self.i < len(s):
            c = s[self.i]
            if c in " \t":
                self.i += 1
                continue
            if c == "#" and (self.i == 0 or s[self.i - 1] in " \t\n;&|()"):
                while self.i < len(s) and s[self.i] != "\n":
                    self.i += 1
                continue
            if c == "\\" and s.startswith("\\\n", self.i):
                self.i += 2
                continue
            if c in "<>" and s.startswith(("<(", ">("), self.i):
                j = matching(self.s, self.i + 2, "(", ")")
                if j < 0:
                    self.opaque("unbalanced process substitution")
                    return out
                self.nested(s[self.i + 2 : j - 1])
                out.append(Word("/dev/fd/63", False))
                self.i = j
                continue
            if c in "<>&" or (c.isdigit() and self._fd_redirect()):
                while self.i < len(s) and s[self.i].isdigit():
                    self.i += 1
                op = next((r for r in _REDIRECTS if s.startswith(r, self.i)), None)
                if op is not None:
                    self.i += len(op)
                    if op in ("<<", "<<-"):
                        self._heredoc_word(op)  # the delimiter word is taken here
                    else:
                        out.append("redir:" + op)
                    continue
            if c == "(":
                out.append("op:(")
                self.i += 1
                continue
            if c == ")":
                out.append("op:)")
                self.i += 1
                continue
            op = next((o for o in _OPERATORS if s.startswith(o, self.i)), None)
            if op is not None:
                self.i += len(op)
                out.append("op:" + op)
                if op == "\n" and self.heredocs:
                    self._heredoc_bodies()
                continue
            word = self.word()
            if word is None:
                if self.i < len(s) and s[self.i] in "<>":
                    continue
                self.i += 1  # a lone character the word reader refused: skip it
                continue
            out.append(word)
        return out

    def _fd_redirect(self) -> bool:
        j = self.i
        while j < len(self.s) and self.s[j].isdigit():
            j += 1
        return (
            j < len(self.s) and self.s[j] in "<>" and (self.i == 0 or self.s[self.i - 1] in " \t")
        )

    def _heredoc_word(self, op: str) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1
        word = self.word()
        if word is None:
            self.opaque("here-document without a delimiter")
            return
        self.heredocs.append((word.text, not word.quoted))

    def _heredoc_bodies(self) -> None:
        s = self.s
        for delimiter, expands in self.heredocs:
            start = self.i
            while self.i <= len(s):
                end = s.find("\n", self.i)
                end = len(s) if end < 0 else end
                if s[self.i : end].lstrip("\t") == delimiter:
                    body = s[start : self.i]
                    self.i = min(end + 1, len(s))
                    break
                if end >= len(s):
                    body = s[start:]
                    self.i = len(s)
                    break
                self.i = end + 1
            else:
                body = ""
            if expands and ("$(" in body or "`" in body):
                Lexer(body, self.nested, self.opaque).scan_expansions()
        self.heredocs = []
