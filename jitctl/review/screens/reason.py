"""The reason prompt: "approve 3f9c… — why?" Returns the text ("" allowed for approve) or None
when cancelled (Escape). A deny needs a reason: an empty one keeps the prompt open."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label


class ReasonScreen(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, action: str, request_id: str, required: bool) -> None:
        super().__init__()
        self.action, self.request_id, self.required = action, request_id, required

    def compose(self) -> ComposeResult:
        with Vertical(id="reason"):
            yield Label(f"{self.action} {self.request_id}: why?", id="reason-question")
            yield Input(placeholder="reason (recorded)", id="reason-input")
            hint = "Enter sends · Escape cancels"
            yield Label(
                hint + (" · a reason is required" if self.required else ""), id="reason-hint"
            )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if self.required and not text:
            self.query_one("#reason-hint", Label).update("a reason is required to deny")
            return
        self.dismiss(text)

    def action_cancel(self) -> None:
        self.dismiss(None)
