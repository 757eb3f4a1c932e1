"""How a WebSocket message reads in the replay timeline and `--print`."""

from __future__ import annotations

from typing import Any

from jitctl.audit.records import Record
from jitctl.replay.kinds import summary, tag_and_category


def _message(payload: dict[str, Any], data: bytes = b"") -> Record:
    return Record(
        "http.ws.message", "s", "api", None, payload, data, 1, seq=1, prev_hash="0", hash="1"
    )


def test_a_text_message_shows_its_direction_size_and_masked_text() -> None:
    record = _message(
        {
            "from": "client",
            "type": "text",
            "size": 27,
            "truncated": False,
            "text": "mail [EMAIL_ADDRESS]",
        }
    )
    assert summary(record) == "→ text 27 B: mail [EMAIL_ADDRESS]"
    assert tag_and_category(record.kind, record.payload) == ("WS", "data")


def test_a_binary_message_from_the_upstream_shows_its_bytes_and_that_it_was_cut() -> None:
    record = _message(
        {"from": "upstream", "type": "binary", "size": 70000, "truncated": True}, b"\x00\x01ab"
    )
    text = summary(record)
    assert text.startswith("← binary 70000 B (cut): ") and "ab" in text
