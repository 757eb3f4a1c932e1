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

from jitctl_ssh.shellwords import Lexer, Word

_KEYWORDS = {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}",
             "coproc", "esac"}  # fmt: skip
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


def analyse(line: str) -> Analysis:
    out = Analysis()
    _analyse_into(line, out, 0)
    return out


def _analyse_into(line: str, out: Analysis, depth: int) -> None:
    def nested(text: str) -> None:
        if depth >= MAX_DEPTH:
            _opaque(out, "commands nested too deeply")
        else:
            _analyse_into(text, out, depth + 1)

    reader = Lexer(line, nested, lambda why: _opaque(out, why))
    tokens = reader.tokens()
    argv: list[Word] = []
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
                _opaque(out, "case patterns")
            continue
        if redirect_next:
            redirect_next = False
            continue
        argv.append(token)


def _simple(words: list[Word], out: Analysis, depth: int, piped_in: bool) -> None:
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


def _program(words: list[Word], out: Analysis, depth: int, piped_in: bool) -> None:
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


def _unwrap(name: str, rest: list[Word]) -> list[Word]:
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


def _shell(words: list[Word], out: Analysis, depth: int, piped_in: bool) -> None:
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


def _script(word: Word, out: Analysis, depth: int) -> None:
    if not word.literal:
        _opaque(out, "a shell runs a script built at run time (-c with a substitution)")
        return
    if depth >= MAX_DEPTH:
        _opaque(out, "commands nested too deeply")
        return
    _analyse_into(word.text, out, depth + 1)


def _find(words: list[Word], out: Analysis, depth: int) -> None:
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
