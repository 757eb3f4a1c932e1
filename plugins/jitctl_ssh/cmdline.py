"""What an SSH exec command line would run: every program the remote shell would start.

sshd runs an exec request as `$SHELL -c "<line>"`, so the line is shell syntax. `analyse(line)`
reads it the way a POSIX shell would and returns every *simple command* (argv after quote
removal) that could run, including those hidden inside:

- lists and pipelines: `;`, `&`, `&&`, `||`, `|`, `|&`, newlines, `( … )`, `{ …; }`;
- command substitution `$( … )` and backticks, also inside double quotes and here-documents
  (they run before the command that contains them), and process substitution `<( … )`;
- `sh -c '…'` (and bash, dash, zsh, ksh, busybox sh) with a literal script: read recursively;
- wrappers that run another program: `sudo`, `env`, `nice`, `nohup`, `timeout`, `xargs`,
  `time`, `command`, `exec`, `stdbuf`, `ionice`, `setsid`, `chrt`, `taskset`, `doas`, `su -c`,
  and `find … -exec`: both the wrapper and the program it runs are listed.

Some lines cannot be read without running them; each such place is listed in `opaque` with the
reason (notes §9: `bash -c "$(echo … | base64 -d)"`): `eval`, `source`/`.`, a variable or a
substitution in command position, a shell reading its script from stdin or a pipe, `-c` with a
non-literal script, `case`, unbalanced quotes or parentheses. Policy treats an opaque line as
the most dangerous thing it could be.

Not in scope, and documented as such: what a program does by itself (`python -c`, `find
-delete`, a script file on the host). Pure: a string in, an `Analysis` out; any input is fine.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

_OPERATORS = ("&&", "||", ";;", "|&", ";", "&", "|", "\n")
_REDIRECTS = ("<<<", "<<-", "<<", ">>", ">&", "<&", "&>>", "&>", ">|", "<>", "<", ">")
_KEYWORDS = {
    "if",
    "then",
    "else",
    "elif",
    "fi",
    "do",
    "done",
    "while",
    "until",
    "!",
    "{",
    "}",
    "coproc",
    "esac",
}
_SHELLS = {"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "fish", "csh", "tcsh"}
_WRAPPERS = {
    "sudo", "doas", "env", "nice", "nohup", "timeout", "xargs", "time", "command", "exec",
    "stdbuf", "ionice", "setsid", "chrt", "taskset", "builtin", "unbuffer", "flock", "watch",
}  # fmt: skip
_OPAQUE_BUILTINS = {"eval": "eval runs a string built at run time", "source": "source runs a "
                    "file's contents", ".": ". runs a file's contents"}  # fmt: skip
MAX_DEPTH = 8


@dataclass
class Analysis:
    commands: list[list[str]] = field(default_factory=list)  # argv of every program started
    opaque: list[str] = field(default_factory=list)  # why part of the line cannot be read

    def programs(self) -> list[str]:
        return [posixpath.basename(argv[0]) for argv in self.commands if argv]


@dataclass
class _Word:
    text: str  # after quote removal
    literal: bool  # no expansion in it (a variable or a substitution makes it non-literal)
    quoted: bool = False
    pattern: bool = False  # unquoted glob or brace characters: the shell may rewrite it


class _Reader:
    """Splits a line into words and operators; substitutions are analysed as they are met."""

    def __init__(self, line: str, out: Analysis, depth: int) -> None:
        self.s, self.i, self.out, self.depth = line, 0, out, depth
        self.heredocs: list[tuple[str, bool]] = []  # (delimiter, body expands)

    def opaque(self, why: str) -> None:
        if why not in self.out.opaque:
            self.out.opaque.append(why)

    def nested(self, text: str) -> None:
        if self.depth >= MAX_DEPTH:
            self.opaque("commands nested too deeply")
            return
        _analyse_into(text, self.out, self.depth + 1)

    def _matching(self, start: int, open_: str, close: str) -> int:
        """Index just past the `close` that balances the `open_` before `start`, or -1."""
        level, i, s = 1, start, self.s
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
            if c == '"':
                j = self._dquote_end(i + 1)
                if j < 0:
                    return -1
                i = j
                continue
            if c == "`":
                j = self._backtick_end(i + 1)
                if j < 0:
                    return -1
                i = j
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

    def _backtick_end(self, i: int) -> int:
        s = self.s
        while i < len(s):
            if s[i] == "\\":
                i += 2
                continue
            if s[i] == "`":
                return i + 1
            i += 1
        return -1

    def _dquote_end(self, i: int) -> int:
        s = self.s
        while i < len(s):
            c = s[i]
            if c == "\\":
                i += 2
                continue
            if c == '"':
                return i + 1
            if s.startswith("$(", i):
                j = self._matching(i + 2, "(", ")")
                if j < 0:
                    return -1
                i = j
                continue
            if c == "`":
                j = self._backtick_end(i + 1)
                if j < 0:
                    return -1
                i = j
                continue
            i += 1
        return -1

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
                _Reader(inner, self.out, self.depth + 1).scan_expansions()
            self.i = j
            return True
        if s.startswith("$(", i):
            j = self._matching(i + 2, "(", ")")
            if j < 0:
                self.opaque("unbalanced $(")
                self.i = len(s)
                return True
            self.nested(s[i + 2 : j - 1])
            self.i = j
            return True
        if s.startswith("${", i):
            j = self._matching(i + 2, "{", "}")
            if j < 0:
                self.opaque("unbalanced ${")
                self.i = len(s)
                return True
            inner = s[i + 2 : j - 1]
            if "$(" in inner or "`" in inner:
                _Reader(inner, self.out, self.depth + 1).scan_expansions()
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
            buf.append(_ansi_c(s[i + 2 : j]))
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
                j = self._backtick_end(self.i + 1)
                if j < 0:
                    self.opaque("unbalanced backtick")
                    return
                self.nested(_unescape_backtick(s[self.i + 1 : j - 1]))
                self.i = j
            else:
                self.i += 1

    def word(self) -> _Word | None:
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
                    return _Word("".join(buf), False, True)
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
                        j = self._backtick_end(self.i + 1)
                        if j < 0:
                            self.opaque("unbalanced backtick")
                            self.i = len(s)
                            return _Word("".join(buf), False, True)
                        self.nested(_unescape_backtick(s[self.i + 1 : j - 1]))
                        literal = False
                        self.i = j
                    else:
                        buf.append(d)
                        self.i += 1
                if self.i >= len(s):
                    self.opaque("unbalanced double quote")
                    return _Word("".join(buf), False, True)
                self.i += 1
            elif c == "$":
                if self._dollar(buf):
                    literal = False
            elif c == "`":
                j = self._backtick_end(self.i + 1)
                if j < 0:
                    self.opaque("unbalanced backtick")
                    self.i = len(s)
                    return _Word("".join(buf), False)
                self.nested(_unescape_backtick(s[self.i + 1 : j - 1]))
                literal = False
                self.i = j
            else:
                pattern = pattern or c in "*?[{"
                buf.append(c)
                self.i += 1
        if not started:
            return None
        return _Word("".join(buf), literal, quoted, pattern)

    def tokens(self) -> list[_Word | str]:
        """Words and operators ("op:;", "op:(", "redir:>", ...), here-documents consumed."""
        out: list[_Word | str] = []
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
                j = self._matching(self.i + 2, "(", ")")
                if j < 0:
                    self.opaque("unbalanced process substitution")
                    return out
                self.nested(s[self.i + 2 : j - 1])
                out.append(_Word("/dev/fd/63", False))
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
                _Reader(body, self.out, self.depth + 1).scan_expansions()
        self.heredocs = []


_C_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b",
              "f": "\f", "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}  # fmt: skip


def _ansi_c(text: str) -> str:
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


def _unescape_backtick(text: str) -> str:
    return text.replace("\\`", "`").replace("\\$", "$").replace("\\\\", "\\")


def analyse(line: str) -> Analysis:
    out = Analysis()
    _analyse_into(line, out, 0)
    return out


def _analyse_into(line: str, out: Analysis, depth: int) -> None:
    reader = _Reader(line, out, depth)
    tokens = reader.tokens()
    if reader.heredocs:
        reader._heredoc_bodies()
    argv: list[_Word] = []
    redirect_next = False
    piped_in = False
    for token in [*tokens, "op:;"]:
        if isinstance(token, str):
            if token.startswith("redir:"):
                redirect_next = True
                continue
            redirect_next = False  # `ls > ; rm x` is a syntax error, but never hide `rm`
            _simple(argv, out, depth, piped_in)
            piped_in = token in ("op:|", "op:|&")
            argv = []
            if token == "op:;;":
                reader.opaque("case patterns")
            continue
        if redirect_next:
            redirect_next = False
            continue
        argv.append(token)


def _simple(words: list[_Word], out: Analysis, depth: int, piped_in: bool) -> None:
    """One simple command: skip keywords and assignments, then look at the program."""
    i = 0
    while i < len(words):
        w = words[i]
        if w.literal and not w.quoted and w.text in _KEYWORDS:
            i += 1
            continue
        if w.literal and not w.quoted and w.text in ("for", "select"):
            return  # `for NAME in WORDS`: no program here; the body comes after `do`
        if w.literal and not w.quoted and w.text == "case":
            _opaque(out, "case … esac is not analysed")
            return
        if w.literal and not w.quoted and w.text == "function":
            return
        if not w.quoted and _is_assignment(w.text):
            i += 1
            continue
        break
    words = words[i:]
    if not words:
        return
    if (len(words) >= 1 and words[0].text.endswith("()")) or (
        len(words) >= 2 and words[1].text == "()"
    ):
        return  # a function definition: its body is analysed where it stands
    _program(words, out, depth, piped_in)


def _is_assignment(text: str) -> bool:
    name, eq, _ = text.partition("=")
    return (
        bool(eq)
        and bool(name)
        and (name[0].isalpha() or name[0] == "_")
        and all(ch.isalnum() or ch == "_" for ch in name.rstrip("+"))
    )


def _opaque(out: Analysis, why: str) -> None:
    if why not in out.opaque:
        out.opaque.append(why)


def _program(words: list[_Word], out: Analysis, depth: int, piped_in: bool) -> None:
    first = words[0]
    if not first.literal:
        _opaque(out, "the program is chosen at run time (a variable or a substitution)")
        return
    if first.pattern and first.text not in ("[", "[["):
        _opaque(out, f"the program name {first.text!r} is a glob or brace pattern")
        return
    argv = [w.text for w in words]
    out.commands.append(argv)
    name = posixpath.basename(first.text)
    if name in _OPAQUE_BUILTINS:
        _opaque(out, _OPAQUE_BUILTINS[name])
        return
    if name in _SHELLS:
        _shell(words, out, depth, piped_in)
        return
    if name == "su":
        for k, w in enumerate(words[1:-1], 1):
            if w.text in ("-c", "--command"):
                _script(words[k + 1], out, depth)
        return
    if name == "find":
        _find(words, out, depth)
        return
    if name in _WRAPPERS:
        inner = _unwrap(name, words[1:])
        if inner:
            _program(inner, out, depth, piped_in)
        elif name in ("xargs",) or (name in ("exec", "command") and piped_in):
            pass  # `xargs` with no command runs echo
        return


def _unwrap(name: str, rest: list[_Word]) -> list[_Word]:
    """The command a wrapper runs: skip its options (and their values) and assignments."""
    takes_value = {
        "sudo": {"-u", "-g", "-C", "-D", "-h", "-p", "-r", "-t", "-U", "-T"},
        "doas": {"-u", "-C"},
        "env": {"-u", "-C", "-S", "--unset", "--chdir"},
        "nice": {"-n"},
        "timeout": {"-s", "-k", "--signal", "--kill-after"},
        "xargs": {"-a", "-d", "-E", "-I", "-L", "-l", "-n", "-P", "-s", "--arg-file",
                  "--delimiter", "--max-args", "--max-procs", "--max-chars", "--replace"},
        "ionice": {"-c", "-n", "-p", "-P", "-u"},
        "chrt": {"-p"},
        "taskset": {"-p"},
        "stdbuf": {"-i", "-o", "-e"},
        "flock": {"-w", "-E", "-c"},
        "watch": {"-n", "-d", "--interval"},
    }.get(name, set())  # fmt: skip
    i = 0
    while i < len(rest):
        text = rest[i].text
        if text == "--":
            i += 1
            break
        if text.startswith("-") and len(text) > 1:
            i += 2 if text in takes_value else 1
            continue
        if name == "env" and _is_assignment(text):
            i += 1
            continue
        if name in ("timeout",) and text[:1].isdigit():
            i += 1
            break
        if name in ("chrt", "taskset") and (text[:1].isdigit() or text.startswith("0x")):
            i += 1
            continue
        if name == "flock" and i == 0:
            i += 1  # the lock file
            continue
        break
    return rest[i:]


def _shell(words: list[_Word], out: Analysis, depth: int, piped_in: bool) -> None:
    rest = words[1:]
    if posixpath.basename(words[0].text) == "busybox":
        if not rest or rest[0].text not in _SHELLS:
            if rest:
                _program(rest, out, depth, piped_in)
            return
        rest = rest[1:]
    for k, w in enumerate(rest):
        text = w.text
        if text == "-c" or (text.startswith("-") and not text.startswith("--") and "c" in text):
            if k + 1 < len(rest):
                _script(rest[k + 1], out, depth)
            else:
                _opaque(out, "a shell -c without a script")
            return
        if text.startswith("-"):
            continue
        _opaque(out, f"a shell runs the script file {text!r}")
        return
    _opaque(out, "a shell reads its commands from stdin" + (" (a pipe)" if piped_in else ""))


def _script(word: _Word, out: Analysis, depth: int) -> None:
    if not word.literal:
        _opaque(out, "a shell runs a script built at run time (-c with a substitution)")
        return
    if depth >= MAX_DEPTH:
        _opaque(out, "commands nested too deeply")
        return
    _analyse_into(word.text, out, depth + 1)


def _find(words: list[_Word], out: Analysis, depth: int) -> None:
    i = 1
    while i < len(words):
        if words[i].text in ("-exec", "-execdir", "-ok", "-okdir"):
            j = i + 1
            while j < len(words) and words[j].text not in (";", "+"):
                j += 1
            if j > i + 1:
                _program(words[i + 1 : j], out, depth, False)
            i = j
        i += 1
