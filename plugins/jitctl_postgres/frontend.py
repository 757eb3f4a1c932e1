"""Client -> server once the session is ready: parse each message, classify it, track the
names it creates or uses, and hand the decision to enforcement.py (or hold it, holds.py).

Rules (notes §4, §5, §7):
- Query: every statement of the string is classified; one denied statement blocks the message.
  Parse: one statement, its name and decision remembered. Bind/Describe/Execute/Close: tracked
  by name. Every message the server answers queues a `Pending` (statements.py).
- Allowed and blocked messages are recorded, and blocked ones rewritten so the server fails
  them, by enforcement.py, which states how.
- An `approve` decision goes through `require_approval`: when the shell offers approvals the
  message is held until a person decides (holds.py, notes §6); otherwise it is refused like a
  denial, with a message saying approval is required. A refused hold is blocked as above.
- CopyData/CopyDone/CopyFail from the client are counted and passed through unparsed (notes §7).
"""

from __future__ import annotations

from typing import Any

from jitctl.plugin import RemoteProtocolError

from . import copyspec, holds
from .enforcement import (
    LocalDecision,
    allow,
    block,
    decide,
    failing_function_call,
    failing_parse,
    failing_query,
)
from .framing import HOLD
from .messages import MAX_MESSAGE, Reader, bind, decode, execute, message, parse, target
from .state import SessionState, classification_fields, decision_fields, param_values, text_fields
from .statements import Expect, Pending, Portal, Prepared

INSPECT = frozenset(b"QPBDECF")
PASS = frozenset(b"SHXdcf")


class Frontend:
    """framing.Sink for the client's messages."""

    def __init__(self, state: SessionState) -> None:
        self.state = state
        self.book = state.book
        self.approvals: dict[str, Any] | None = None  # the shell's offer (jitctl.plugin Hold)
        self.held: holds.Held | None = None
        self.notice = b""  # for the client: what it waits for (the core sends it)
        self._body = b""

    # -- Sink ---------------------------------------------------------------------------------

    inspected = INSPECT

    def limit(self, kind: int) -> int:
        return MAX_MESSAGE

    def stream_start(self, kind: int, length: int) -> bool:
        if kind != 0x64:  # only CopyData streams
            return False
        self.book.copy_in_bytes += length - 4
        self.book.copy_in_messages += 1
        return True

    def message(self, kind: int, body: bytes | None, length: int) -> bytes | None:
        if body is None:
            return self._plain(kind, length)
        handler = _HANDLERS[kind]
        self._body = body  # a held message is released byte for byte
        result: bytes | None = handler(self, body)
        return result

    # -- decisions ----------------------------------------------------------------------------

    def _block(
        self,
        pending: Pending,
        decision: Any,
        payload: dict[str, Any],
        rewrite: bytes,
        data: bytes = b"",
    ) -> bytes:
        if (
            getattr(decision, "action", "deny") == "approve"
            and self.approvals is not None
            and pending.expect in holds.HOLDABLE
        ):
            return self.require_approval(pending, decision, payload, rewrite, data)
        return block(self.state, pending, decision, payload, rewrite, data)

    def require_approval(
        self,
        pending: Pending,
        decision: Any,
        payload: dict[str, Any],
        rewrite: bytes,
        data: bytes,
    ) -> bytes:
        """The approvals seam: hold this message (and everything behind it) until
        `release` (holds.py)."""
        kind = {Expect.QUERY: b"Q", Expect.PARSE: b"P", Expect.FUNCTION: b"F"}[pending.expect]
        parse_info = None
        if pending.expect is Expect.PARSE:
            name, text, _ = parse(self._body)
            parse_info = (name, text, self.state.services.classify(text))
        self.held = holds.hold(
            self, pending, decision, payload, message(kind, self._body), rewrite, data, parse_info
        )
        return HOLD

    def release(self, hold_id: str, review: Any) -> bytes | None:
        """The decision on the held message: the bytes that go upstream in its place, or
        None when `hold_id` is not the message held now."""
        held = self.held
        if held is None or held.hold_id != hold_id:
            return None
        self.held = None
        return holds.release(self, held, review)

    def _watch_names(self, classification: Any) -> None:
        """Note SQL that may create or drop statement or portal names (`Book.names_unsure`);
        a classification that cannot say counts as one that may."""
        if not self.book.names_unsure and getattr(classification, "may_touch_names", True):
            self.book.names_unsure = True

    # -- message handlers ---------------------------------------------------------------------

    def _query(self, body: bytes) -> bytes | None:
        end = body.find(b"\0")
        if end < 0:
            raise RemoteProtocolError("string without its NUL terminator")
        if end != len(body) - 1:
            raise RemoteProtocolError("bytes after the Query string")
        text = decode(body[:end])
        classification = self.state.services.classify(text)
        self._watch_names(classification)
        decision = decide(self.state, classification, text)
        pending = Pending(Expect.QUERY, seq=self.book.next_seq(), text=text)
        if self.state.masks is not None and "copy" in text.lower():
            pending.copy_specs = copyspec.copy_specs(text)
        shown, data = text_fields(text)
        payload = {
            "protocol": "simple",
            **shown,
            **classification_fields(classification),
            **decision_fields(decision),
        }
        if decision.action == "allow":
            allow(self.state, pending, payload, data, classification)
            return None
        return self._block(pending, decision, payload, failing_query(), data)

    def _parse(self, body: bytes) -> bytes | None:
        name, text, tail = parse(body)
        earlier = self.book.blocked.get(name) if name else None
        classification = self.state.services.classify(text)
        self._watch_names(classification)
        if earlier is not None:
            decision: Any = LocalDecision(
                "deny",
                decision_fields(earlier)["rule"],
                f"statement name {name!r} was blocked earlier ({getattr(earlier, 'reason', '')})",
            )
        else:
            decision = decide(self.state, classification, text)
        seq = self.book.next_seq()
        pending = Pending(Expect.PARSE, seq=seq, name=name, previous=self.book.statements.get(name))
        if decision.action == "allow":
            if not self.book.parse_creates(name):
                # A pipelined Execute behind this refused Parse runs, and records, the first.
                self.book.push(pending)
                return None
            self.book.statements[name] = Prepared(name, text, classification, decision, seq)
            if not name:
                self.book.blocked.pop("", None)
            self.book.push(pending)
            return None
        if not name or name not in self.book.statements:
            # A name that exists server-side keeps its (allowed) statement: the failed Parse
            # does not replace it. Otherwise the name is blocked for good (notes §5).
            self.book.statements.pop(name, None)
            self.book.blocked[name] = decision
        shown, data = text_fields(text)
        payload = {
            "protocol": "extended",
            "stage": "parse",
            "statement": name,
            **shown,
            **classification_fields(classification),
        }
        return self._block(pending, decision, payload, failing_parse(name, tail), data)

    def _bind(self, body: bytes) -> bytes | None:
        msg = bind(body)
        blocked = self.book.blocked.get(msg.statement)
        prepared = None if blocked is not None else self.book.statements.get(msg.statement)
        params = param_values(msg.params, msg.param_formats)
        self.book.portals[msg.portal] = Portal(
            msg.portal, msg.statement, prepared, params, msg.result_formats, blocked=blocked
        )
        pending = Pending(Expect.BIND, name=msg.portal)
        if blocked is None:
            self.book.push(pending)
            return None
        pending.seq = self.book.next_seq()
        payload = {
            "protocol": "extended",
            "stage": "bind",
            "statement": msg.statement,
            "portal": msg.portal,
            "params": params,
        }
        self._block(pending, blocked, payload, b"")
        return None

    def _describe(self, body: bytes) -> bytes | None:
        which, name = target(body)
        # The object as of now: in a pipeline the name may be rebound before the answer comes.
        described: Prepared | Portal | None
        if which == "S":
            blocked = self.book.blocked.get(name)
            described = self.book.statements.get(name)
        else:
            described = self.book.portals.get(name)
            blocked = described.blocked if described is not None else None
        self.book.push(
            Pending(Expect.DESCRIBE, name=name, which=which, blocked=blocked, described=described)
        )
        return None

    def _execute(self, body: bytes) -> bytes | None:
        name, max_rows = execute(body)
        portal = self.book.portals.get(name)
        pending = Pending(Expect.EXECUTE, seq=self.book.next_seq(), name=name, portal=portal)
        payload: dict[str, Any] = {"protocol": "extended", "portal": name, "max_rows": max_rows}
        if portal is not None:
            payload.update(
                statement=portal.statement,
                params=portal.params,
                result_formats=list(portal.result_formats),
            )
            if portal.blocked is not None:
                pending.blocked = portal.blocked
                self._block(pending, portal.blocked, {**payload, "stage": "execute"}, b"")
                return None
        prepared = portal.prepared if portal is not None else None
        data = b""
        if prepared is not None:
            pending.text = prepared.text
            if prepared.fields is None:  # the same for every execution: built once
                shown, prepared.data = text_fields(prepared.text)
                prepared.fields = {
                    **shown,
                    **classification_fields(prepared.classification),
                    **decision_fields(prepared.decision),
                }
            payload.update(prepared.fields)
            data = prepared.data
            if self.state.masks is not None and "copy" in prepared.text.lower():
                pending.copy_specs = copyspec.copy_specs(prepared.text)
        else:
            payload.update(
                text=None,
                decision="allow",
                rule=None,
                note="statement not prepared through this session's Parse",
            )
        # Only a plainly allowed statement may skip the wait: one let through by an approval,
        # or not prepared here, always waits. Once SQL may have moved names (`names_unsure`),
        # only the unnamed portal of the unnamed statement is surely what the book says (SQL
        # can name neither).
        classification = None
        if (
            prepared is not None
            and getattr(prepared.decision, "action", "") == "allow"
            and (not self.book.names_unsure or not (name or prepared.name))
        ):
            classification = prepared.classification
        allow(self.state, pending, payload, data, classification)
        return None

    def _close(self, body: bytes) -> bytes | None:
        which, name = target(body)
        if which == "S":
            self.book.statements.pop(name, None)
        else:
            self.book.portals.pop(name, None)
        self.book.push(Pending(Expect.CLOSE, name=name, which=which))
        return None

    def _function_call(self, body: bytes) -> bytes | None:
        reader = Reader(body)
        oid = reader.uint32()
        classification = self.state.services.classify_function_call(oid)
        self.book.names_unsure = True  # a function may PREPARE or DEALLOCATE by SPI
        decision = decide(self.state, classification, None)
        pending = Pending(Expect.FUNCTION, seq=self.book.next_seq(), text=f"FunctionCall {oid}")
        payload = {
            "protocol": "function",
            "text": pending.text,
            "function_oid": oid,
            **classification_fields(classification),
            **decision_fields(decision),
        }
        if decision.action == "allow":
            allow(self.state, pending, payload)
            return None
        return self._block(pending, decision, payload, failing_function_call(body))

    def _plain(self, kind: int, length: int) -> bytes | None:
        if kind == 0x64:  # d CopyData
            self.book.copy_in_bytes += length - 4
            self.book.copy_in_messages += 1
        elif kind in (0x63, 0x66):  # c CopyDone, f CopyFail
            if self.book.copy_in_open:
                self.book.copy_in_open = False
            else:
                self.book.push(Pending(Expect.COPY_END))
        elif kind == 0x53:  # S Sync: ignored by the server during COPY IN
            if not self.book.copy_in_open:
                self.book.push(Pending(Expect.SYNC))
        elif kind not in PASS:  # H Flush and X Terminate owe nothing
            raise RemoteProtocolError(f"unexpected message type {chr(kind)!r} from the client")
        return None


_HANDLERS = {
    ord("Q"): Frontend._query,
    ord("P"): Frontend._parse,
    ord("B"): Frontend._bind,
    ord("D"): Frontend._describe,
    ord("E"): Frontend._execute,
    ord("C"): Frontend._close,
    ord("F"): Frontend._function_call,
}
