"""The session view: timeline, detail, terminal (or byte stream), player, search, export.

The screen owns the state (position, player, search matches, chain verdict) and hands it down
to its widgets; widgets report user moves up as messages. Everything slow runs in thread
workers over the plain-Python reader: the rest of the index, the chain check, the terminal
keyframes, search and export.
"""

from __future__ import annotations

import threading
import time
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import get_current_worker

from jitctl.replay.chain import PENDING, ChainState, verify_session
from jitctl.replay.gate import Gate
from jitctl.replay.hits import Hits
from jitctl.replay.kinds import TERM_KINDS
from jitctl.replay.player import Player
from jitctl.replay.reader import SessionReader
from jitctl.replay.screens.prompt import PromptScreen
from jitctl.replay.search import Match, search
from jitctl.replay.terminal import Keyframes, TerminalModel, build_keyframes
from jitctl.replay.timefmt import parse_seek
from jitctl.replay.widgets.detail import DetailView
from jitctl.replay.widgets.player_bar import PlayerBar
from jitctl.replay.widgets.session_header import SessionHeader, header_text
from jitctl.replay.widgets.stream_view import StreamView
from jitctl.replay.widgets.terminal_view import TerminalView
from jitctl.replay.widgets.timeline import Timeline

if TYPE_CHECKING:
    from jitctl.audit.store import AuditStore

TICK = 1 / 30


class SessionScreen(Screen[None]):
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (160, "-wide")]  # noqa: RUF012 (typed by Textual)
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space", "toggle_play", "Play"),
        Binding("plus,equals_sign", "faster", "Faster", key_display="+"),
        Binding("minus", "slower", "Slower", key_display="-"),
        Binding("c", "command(1)", "Next cmd"),
        Binding("C", "command(-1)", "Prev cmd", show=False),
        Binding("slash", "search", "Find", key_display="/"),
        Binding("n", "match(1)", "Next hit"),
        Binding("N", "match(-1)", "Prev hit", show=False),
        Binding("t", "seek", "Seek"),
        Binding("e", "export", "Export"),
        Binding("v", "toggle_view", "View"),
        Binding("x", "toggle_hex", "Hex/text", show=False),
        Binding("q,escape", "back", "Back"),
        Binding("question_mark", "app.show_help_panel", "Keys", key_display="?", show=False),
    ]

    def __init__(
        self,
        store: AuditStore,
        trusted: dict[str, bytes] | None,
        session_id: str,
        *,
        tz: tzinfo | None = None,
        standalone: bool = False,
    ) -> None:
        super().__init__()
        self.store, self.trusted, self.tz, self.standalone = store, trusted, tz, standalone
        self.reader = SessionReader(store, session_id)
        counts = self.reader.summary.kind_counts if self.reader.summary else {}
        has_term = any(k in counts for k in TERM_KINDS) or self.reader.first_of(TERM_KINDS)
        streams = "tcp.data" in counts or "ssh.data" in counts
        self.pane = "terminal" if has_term else ("stream" if streams else "")
        self.keyframes = Keyframes.empty()
        self.model = TerminalModel(self.reader, self.keyframes) if self.pane == "terminal" else None
        self.player = Player(self.reader.index.times)
        self.position = 0
        self.hex_view = False
        self.chain: ChainState = PENDING
        self.hits = Hits()
        self.exported: Path | None = None
        self._quit = threading.Event()
        self._gate = Gate()
        self._last_tick = 0.0
        self.first_paint = threading.Event()  # set once the first screen is drawn (benchmarks)
        self.painted_at = 0.0  # perf_counter() when the last move was drawn

    # -- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield SessionHeader(
            header_text(self.reader.session_id, self.reader.summary, self.chain),
            id="session-header",
        )
        with Vertical(id="panes"):
            yield Timeline(self.reader, self.tz, id="timeline")
            with Horizontal(id="side"):
                yield DetailView(id="detail")
                if self.pane == "terminal":
                    yield TerminalView(id="terminal")
                elif self.pane == "stream":
                    yield StreamView(id="stream")
        yield PlayerBar("", id="player-bar")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.add_class("-view-pane" if self.pane else "-view-detail")
        self._play_timer = self.set_interval(TICK, self._tick, pause=True)
        self._index()
        if self.model is not None:
            self._keyframes()
        if self.reader.summary is not None and self.reader.summary.status == "open":
            self.set_interval(1.0, self._follow)
        self.query_one(Timeline).focus()
        self.go(0)

    def on_unmount(self) -> None:
        self._quit.set()

    # -- state down -------------------------------------------------------------------------------

    def go(self, position: int, *, playing: bool = False) -> None:
        """Move everything to `position` (clamped to the indexed records)."""
        position = max(0, min(position, self.reader.count - 1))
        self.position = position
        # Workers stand still until this move is drawn (see jitctl.replay.gate).
        self._gate.close()
        self.call_after_refresh(self._painted)
        if not playing:
            self.player.seek(position)
        timeline = self.query_one(Timeline)
        timeline.count = self.reader.count
        timeline.cursor = position
        record = self.reader.record(position)
        self.query_one(DetailView).show(record, self.reader.start_us, self.tz, self.hex_view)
        if self.model is not None:
            self.model.seek(position)
            self.query_one(TerminalView).show(self.model)
        elif self.pane == "stream":
            self.query_one(StreamView).show(self.reader, position, self.hex_view)
        self._update_bar()

    def _painted(self) -> None:
        self._gate.open()
        self.painted_at = time.perf_counter()
        self.first_paint.set()

    def _update_bar(self) -> None:
        self.query_one("#player-bar", PlayerBar).show(
            self.player, self.reader, self.position, self.hits
        )

    # -- messages up ------------------------------------------------------------------------------

    def on_timeline_moved(self, message: Timeline.Moved) -> None:
        self.player.pause()
        self._play_timer.pause()
        if message.position < 0:
            with self._gate.lifted():
                self.reader.build()
            self.go(self.reader.count - 1)
        else:
            self.go(message.position)

    # -- playback ---------------------------------------------------------------------------------

    def _tick(self) -> None:
        now = time.monotonic()
        elapsed, self._last_tick = now - self._last_tick, now
        before = self.position
        position = self.player.advance(elapsed, self.reader.count)
        if position != before:
            self.go(position, playing=True)
        if not self.player.playing:
            self._play_timer.pause()
            self._update_bar()

    def action_toggle_play(self) -> None:
        if not self.player.playing and self.position >= self.reader.count - 1:
            self.go(0)
        if self.player.toggle():
            self._last_tick = time.monotonic()
            self._play_timer.resume()
        else:
            self._play_timer.pause()
        self._update_bar()

    def action_faster(self) -> None:
        self.player.faster()
        self._update_bar()

    def action_slower(self) -> None:
        self.player.slower()
        self._update_bar()

    def action_command(self, step: int) -> None:
        with self._gate.lifted():
            found = self.reader.next_command(self.position, step)
        if found is None:
            self.notify("no more commands that way", timeout=2)
            return
        self.go(found)

    def action_seek(self) -> None:
        self.app.push_screen(
            PromptScreen(
                "Seek to",
                hint="+1:23 or 90s (offset) · 12:03:04 (wall time) · #120 (event number)",
            ),
            self._seek_to,
        )

    def _seek_to(self, text: str | None) -> None:
        if not text:
            return
        if text.startswith("#") and text[1:].replace(",", "").isdigit():
            number = int(text[1:].replace(",", ""))
            if number > self.reader.count:
                with self._gate.lifted():
                    self.reader.build()
            self.go(number - 1)
            return
        try:
            when = parse_seek(text, self.reader.start_us, self.tz)
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        if not self.reader.index.complete and when > self.reader.index.mono[self.reader.count - 1]:
            with self._gate.lifted():
                self.reader.build()
        self.go(self.reader.position_at(when))

    # -- search -----------------------------------------------------------------------------------

    def action_search(self) -> None:
        self.app.push_screen(PromptScreen("Search", self.hits.text), self._start_search)

    def _start_search(self, text: str | None) -> None:
        if not text:
            return
        self.hits.start(text)
        self.query_one(Timeline).set_matches(set())
        self._search(text)
        self._update_bar()

    @work(thread=True, exclusive=True, group="search")
    def _search(self, text: str) -> None:
        worker = get_current_worker()

        def stop() -> bool:
            return worker.is_cancelled or self._quit.is_set()

        found: list[Match] = []
        last = time.monotonic()

        def stop_or_wait() -> bool:
            self._gate.wait()
            return stop()

        for match in search(self.reader.stream(), text, stop_or_wait):
            found.append(match)
            if len(found) == 1 or time.monotonic() - last > 0.2:
                last = time.monotonic()
                self.app.call_from_thread(self._found, list(found), False)
        if not stop():
            self.app.call_from_thread(self._found, found, True)

    def _found(self, matches: list[Match], done: bool) -> None:
        self.query_one(Timeline).set_matches({m.position for m in matches})
        jump = self.hits.arrived(matches, done, self.position)
        if jump is not None:
            self.go(jump)
        if done and not matches:
            self.notify(f"no match for {self.hits.text!r}", timeout=3)
        self._update_bar()

    def action_match(self, step: int) -> None:
        target = self.hits.step(self.position, step)
        if target is None:
            self.notify("no matches (search with /)", timeout=2)
            return
        self.go(target)

    @property
    def matches(self) -> list[Match]:
        """The current search's hits so far, in session order."""
        return self.hits.matches

    # -- export -----------------------------------------------------------------------------------

    def action_export(self) -> None:
        from jitctl.replay.exporting import default_path

        format_ = "asciicast" if self.pane == "terminal" else "jsonl"
        path = default_path(self.reader.session_id, format_)
        self.app.push_screen(
            PromptScreen("Export to", str(path), hint=".cast: asciicast v2 · .jsonl: JSONL"),
            self._export_to,
        )

    def _export_to(self, text: str | None) -> None:
        if text:
            self._export(Path(text).expanduser())

    @work(thread=True, group="export")
    def _export(self, path: Path) -> None:
        from jitctl.errors import JitctlError
        from jitctl.replay.exporting import export_session

        format_ = "asciicast" if path.suffix == ".cast" else "jsonl"
        try:
            count = export_session(self.store, self.reader.session_id, format_, path)
        except (JitctlError, OSError) as exc:
            message = exc.message if isinstance(exc, JitctlError) else str(exc)
            self.app.call_from_thread(self.notify, message, severity="error")
            return
        unit = "events" if format_ == "asciicast" else "records"
        self.app.call_from_thread(self.notify, f"wrote {count} {unit} to {path}")
        self.exported = path

    # -- view -------------------------------------------------------------------------------------

    def action_toggle_view(self) -> None:
        if self.pane:
            pane = self.has_class("-view-pane")
            self.set_class(not pane, "-view-pane")
            self.set_class(pane, "-view-detail")

    def action_toggle_hex(self) -> None:
        self.hex_view = not self.hex_view
        self.go(self.position)

    def action_back(self) -> None:
        self._quit.set()
        if self.standalone:
            self.app.exit()
        else:
            self.app.pop_screen()

    # -- workers ----------------------------------------------------------------------------------

    @work(thread=True, group="index")
    def _index(self) -> None:
        self.reader.build(self._quit.is_set, self._gate.wait)
        if self._quit.is_set():
            return
        self.app.call_from_thread(self._indexed)
        index = self.reader.index
        state = verify_session(
            self.store,
            self.trusted,
            index.seqs[0],
            index.seqs[index.count - 1],
            stop=self._quit.is_set,
            between=self._gate.wait,
        )
        if not self._quit.is_set():
            self.app.call_from_thread(self._verified, state)

    def _indexed(self) -> None:
        self.query_one(Timeline).count = self.reader.count
        self._update_bar()

    def _verified(self, state: ChainState) -> None:
        self.chain = state
        self.query_one("#session-header", SessionHeader).show(
            self.reader.session_id, self.reader.summary, state
        )

    @work(thread=True, group="keyframes")
    def _keyframes(self) -> None:
        def progress(position: int) -> None:
            if not self._quit.is_set():
                self.app.call_from_thread(self._refine)

        build_keyframes(
            self.reader, self.keyframes, self._quit.is_set, progress, between=self._gate.wait
        )

    def _refine(self) -> None:
        if self.model is not None and self.model.refine():
            self.query_one(TerminalView).show(self.model)

    @work(thread=True, exclusive=True, group="follow")
    def _follow(self) -> None:
        if self.reader.refresh():
            self.app.call_from_thread(self._indexed)
