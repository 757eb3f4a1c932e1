"""Recording a session channel: terminals and exec streams, masking that survives split reads."""

from __future__ import annotations

import re
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from jitctl.plugin import Direction, Forward, Record, Shutdown
from jitctl_ssh.channel import ChannelRecorder, ExitStatus, SendStderr
from jitctl_ssh.streammask import StreamMasker

SECRET = re.compile(rb"sk-[a-z0-9]{8}")


def mask(data: bytes) -> tuple[bytes, Counter[str]]:
    counts: Counter[str] = Counter()

    def swap(_: re.Match[bytes]) -> bytes:
        counts["API_KEY"] += 1
        return b"[API_KEY]"

    return SECRET.sub(swap, data), counts


def records(commands: list) -> list[Record]:  # type: ignore[type-arg]
    return [c for c in commands if isinstance(c, Record)]


def test_keystrokes_are_recorded_durably_before_they_are_forwarded() -> None:
    out = ChannelRecorder(0, pty=True).client_data(b"ls\r")
    assert out == [
        Record("term.input", {"channel": 0, "len": 3}, data=b"ls\r", durable=True),
        Forward(Direction.UP, b"ls\r"),
    ]


def test_terminal_output_is_recorded_then_forwarded_without_waiting() -> None:
    out = ChannelRecorder(2, pty=True).upstream_data(b"$ ")
    assert out == [
        Record("term.output", {"channel": 2, "len": 2}, data=b"$ "),
        Forward(Direction.DOWN, b"$ "),
    ]


def test_window_size_and_exit_use_the_replay_kinds() -> None:
    rec = ChannelRecorder(0, pty=True)
    assert rec.resize(120, 40, term="xterm") == [
        Record("term.resize", {"channel": 0, "cols": 120, "rows": 40, "term": "xterm"})
    ]
    assert rec.exit(3) == [
        Record("term.exit", {"channel": 0, "status": 3}),
        ExitStatus(3, ""),
    ]


def test_exec_streams_are_recorded_apart_with_offsets() -> None:
    rec = ChannelRecorder(1, pty=False)
    rec.upstream_data(b"abc")
    out = rec.upstream_data(b"de")
    err = rec.upstream_stderr(b"oops")
    assert out[0] == Record(
        "ssh.data", {"channel": 1, "stream": "stdout", "offset": 3, "len": 2}, data=b"de"
    )
    assert err == [
        Record("ssh.data", {"channel": 1, "stream": "stderr", "offset": 0, "len": 4}, b"oops"),
        SendStderr(b"oops"),
    ]
    assert rec.exit(None, "KILL")[0] == Record(
        "ssh.exit", {"channel": 1, "status": None, "signal": "KILL"}
    )


def test_records_are_bounded_by_the_chunk_size() -> None:
    out = ChannelRecorder(0, pty=False, chunk_size=256).client_data(b"x" * 600)
    assert [r.payload["len"] for r in records(out)] == [256, 256, 88]
    assert out[-1] == Forward(Direction.UP, b"x" * 600)


def test_end_of_data_is_recorded_and_passed_on() -> None:
    rec = ChannelRecorder(0, pty=False)
    assert rec.client_eof()[-1] == Shutdown(Direction.UP)
    assert rec.upstream_eof()[-1] == Shutdown(Direction.DOWN)


def test_secrets_in_output_are_masked_for_the_client_and_the_trail() -> None:
    out = ChannelRecorder(0, pty=True, mask=mask).upstream_data(b"key=sk-abcdefgh\r\n")
    assert out[0] == Record(
        "term.output",
        {"channel": 0, "len": 15, "masked": {"API_KEY": 1}},
        data=b"key=[API_KEY]\r\n",
    )
    assert out[1] == Forward(Direction.DOWN, b"key=[API_KEY]\r\n")


def test_typed_secrets_are_masked_in_the_trail_but_reach_the_host_as_typed() -> None:
    out = ChannelRecorder(0, pty=True, mask=mask).client_data(b"export K=sk-abcdefgh\r")
    assert out[0].data == b"export K=[API_KEY]\r"  # type: ignore[union-attr]
    assert out[-1] == Forward(Direction.UP, b"export K=sk-abcdefgh\r")


def test_a_secret_split_across_reads_is_still_masked_when_more_is_waiting() -> None:
    rec = ChannelRecorder(0, pty=True, mask=mask)
    first = rec.upstream_data(b"line one\r\nkey=sk-abc", more=True)
    second = rec.upstream_data(b"defgh\r\n", more=False)
    sent = b"".join(c.data for c in first + second if isinstance(c, Forward))
    assert sent == b"line one\r\nkey=[API_KEY]\r\n"


def test_a_prompt_is_never_held_back() -> None:
    out = ChannelRecorder(0, pty=True, mask=mask).upstream_data(b"user@host:~$ ", more=False)
    assert out[-1] == Forward(Direction.DOWN, b"user@host:~$ ")


def test_a_failing_masker_withholds_instead_of_passing_raw() -> None:
    def broken(data: bytes) -> tuple[bytes, Counter[str]]:
        raise RuntimeError("boom")

    out = ChannelRecorder(0, pty=True, mask=broken).upstream_data(b"secret\r\n")
    assert out[-1] == Forward(Direction.DOWN, b"[withheld]")


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_secret_cut_anywhere_is_masked_as_if_it_came_whole(data: st.DataObject) -> None:
    text = b"a\r\nkey sk-abcdefgh end\nb"
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=5)))
    pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    masker = StreamMasker(mask)
    sent = b""
    for i, piece in enumerate(pieces):
        sent += masker.feed(piece, more=i < len(pieces) - 1)[0]
    sent += masker.flush()[0]
    assert sent == mask(text)[0]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.binary(max_size=60), st.booleans()), max_size=12))
def test_the_stream_masker_never_loses_or_reorders_bytes(reads: list[tuple[bytes, bool]]) -> None:
    masker = StreamMasker(lambda data: (data, Counter()))
    sent = b"".join(masker.feed(chunk, more)[0] for chunk, more in reads) + masker.flush()[0]
    assert sent == b"".join(chunk for chunk, _ in reads)
