"""Lazy, plain-Python access to one recorded session: an index of positions, pages of records.

Rules:
- A session is the records carrying its session id, in seq order; position i is its i-th record
  (a refusal recorded without a session id, `denied-<seq>`, is a session of one record).
- The index keeps five small columns per record (seq, time, kind, data length, and whether a
  `term.input` holds Enter) — never payloads or data. It grows in chunks of `CHUNK` by keyset
  paging: opening a reader indexes the first `UP_FRONT` records (≈0.15 s per 100,000 on
  SQLite, so that seeking anywhere in a session of that size never waits), `build()` (run it
  in a worker thread) the rest, and `refresh()` picks up records appended to a live session.
- Records are read a page (`PAGE` records) at a time through the store's public
  `iter_records` and kept in a small LRU, so nothing ever holds a whole session.
- The index SELECTs go through the store's `_rows` (written with `?` placeholders, which both
  the SQLite and PostgreSQL stores accept): the public reads return whole records, which for an
  index of 100,000 records would cost ten times as much.
- Thread-safety: the index only grows, and `count` moves after a chunk's columns are all
  appended, so a reader on another thread never sees a half-added row. The page cache has a lock.
"""

from __future__ import annotations

import bisect
import copy
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterator
from itertools import accumulate, islice
from typing import TYPE_CHECKING, Any

from jitctl.audit.records import Record, SessionSummary
from jitctl.audit.sessions import DENIED_PREFIX
from jitctl.replay.kinds import ENTER, TERM_INPUT, TERM_OUTPUT, TERM_RESIZE, is_command

if TYPE_CHECKING:
    from jitctl.audit.store import AuditStore

CHUNK = 10_000  # index rows per query
UP_FRONT = 200_000  # rows indexed before the first screen; the rest in a worker
PAGE = 200  # records per page read
CACHE_PAGES = 64
OTHER_KIND = 255  # index kind id of the 256th and later distinct kinds

# What the index reads of each record (AuditStore._by_session, seq > after, LIMIT).
_INDEX_SQL = "seq, time_us, kind, length(data), CASE WHEN kind = 'term.input' THEN data END"
# Sessions without terminal records need no data lengths: reading them costs half the time.
_LIGHT_INDEX_SQL = "seq, time_us, kind, 0, NULL"


class SessionNotFound(LookupError):
    pass


class SessionIndex:
    """Per position: seq, time, kind id, data length, Enter flag; plus running sums."""

    def __init__(self) -> None:
        self.seqs = array("q")
        self.times = array("q")  # as recorded
        self.mono = array("q")  # running maximum of times, for bisecting by time
        self.kinds = bytearray()
        self.lengths = array("q")
        self.out_bytes = array("q")  # term.output bytes up to and including each position
        self.enters = bytearray()  # 1: a term.input holding Enter
        self.kind_names: list[str] = []
        self._kind_ids: dict[str, int] = {}
        self.count = 0
        self.complete = False
        self.grown = threading.Condition()

    def kind_id(self, kind: str) -> int:
        found = self._kind_ids.get(kind)
        if found is None:
            found = len(self.kind_names) if len(self.kind_names) < OTHER_KIND else OTHER_KIND
            if found < OTHER_KIND:
                self.kind_names.append(kind)
            self._kind_ids[kind] = found
        return found

    def id_of(self, kind: str) -> int:
        """The index id of `kind`, or -1 when the session has none (never adds a kind)."""
        found = self._kind_ids.get(kind, -1)
        return -1 if found == OTHER_KIND else found

    def ids_of(self, predicate: Callable[[str], bool]) -> list[int]:
        ids = [i for i, name in enumerate(self.kind_names) if predicate(name)]
        return ids + ([OTHER_KIND] if len(self.kind_names) >= OTHER_KIND else [])

    def add(self, rows: list[tuple[Any, ...]]) -> None:
        out_id = self.kind_id(TERM_OUTPUT)
        ids = [self._kind_ids.get(row[2]) for row in rows]
        if None in ids:
            ids = [self.kind_id(str(row[2])) for row in rows]
        times = [int(row[1]) for row in rows]
        sizes = [int(row[3] or 0) for row in rows]
        self.seqs.extend([int(row[0]) for row in rows])
        self.times.extend(times)
        top = self.mono[-1] if self.count else 0
        self.mono.extend(islice(accumulate(times, max, initial=top), 1, None))
        self.kinds.extend(ids)  # type: ignore[arg-type]
        self.lengths.extend(sizes)
        outputs = [size if kid == out_id else 0 for kid, size in zip(ids, sizes, strict=True)]
        total = self.out_bytes[-1] if self.count else 0
        self.out_bytes.extend(islice(accumulate(outputs, initial=total), 1, None))
        self.enters.extend(
            [
                1 if row[4] is not None and any(m in bytes(row[4]) for m in ENTER) else 0
                for row in rows
            ]
        )
        with self.grown:
            self.count = len(self.seqs)
            self.grown.notify_all()

    def finish(self) -> None:
        with self.grown:
            self.complete = True
            self.grown.notify_all()

    def wait(self, count: int | None = None, timeout: float | None = None) -> bool:
        """Block until `count` rows are indexed (None: the whole session); True if they are."""
        with self.grown:
            return self.grown.wait_for(
                lambda: self.complete or (count is not None and self.count >= count), timeout
            )


class SessionReader:
    def __init__(
        self,
        store: AuditStore,
        session_id: str,
        *,
        page: int = PAGE,
        cache_pages: int = CACHE_PAGES,
        up_front: int = UP_FRONT,
    ) -> None:
        self.store = store
        self.session_id = session_id
        self.page = page
        self.cache_pages = cache_pages
        self.index = SessionIndex()
        self._cache: OrderedDict[int, list[Record]] = OrderedDict()
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()
        self._single: Record | None = None
        self._columns = _INDEX_SQL
        self.summary: SessionSummary | None = store.session(session_id)
        if session_id.startswith(DENIED_PREFIX) and session_id[len(DENIED_PREFIX) :].isdigit():
            record = store.get(int(session_id[len(DENIED_PREFIX) :]))
            if record is None or self.summary is None:
                raise SessionNotFound(session_id)
            self._single = record
            self.index.add([(record.seq, record.time_us, record.kind, len(record.data), None)])
            self.index.finish()
        else:
            counts = self.summary.kind_counts if self.summary else {}
            light = self.summary is not None and not any(k.startswith("term.") for k in counts)
            self._columns = _LIGHT_INDEX_SQL if light else _INDEX_SQL
            while not self.index.complete and self.index.count < up_front:
                want = min(CHUNK, up_front - self.index.count)
                if self._extend(want) < want:
                    self.index.finish()
        if self.index.count == 0:
            raise SessionNotFound(session_id)

    def fork(self) -> SessionReader:
        """A reader sharing this one's index with a page cache of its own (for a worker that
        reads the whole session, which must not evict the pages the UI shows)."""
        other = copy.copy(self)
        other._cache = OrderedDict()
        other._lock = threading.Lock()
        return other

    # -- the index ----------------------------------------------------------------------------

    def _extend(self, limit: int) -> int:
        after = self.index.seqs[-1] if self.index.count else 0
        rows = self.store._by_session(
            self._columns,
            [self.session_id],
            "{seq} > ?",
            [after],
            "ORDER BY {seq} LIMIT ?",
            [limit],
        )[:limit]
        if rows:
            self.index.add(rows)
        return len(rows)

    def build(
        self, stop: Callable[[], bool] = lambda: False, between: Callable[[], None] | None = None
    ) -> None:
        """Index the rest of the session: in a worker thread, or inline when something needs
        the whole index now (it then waits for a worker already building)."""
        with self._build_lock:
            while not self.index.complete and not stop():
                if self._extend(CHUNK) < CHUNK:
                    self.index.finish()
                elif between is not None:
                    between()

    def refresh(self) -> int:
        """Index records appended since (a live session); returns how many were added."""
        if self._single is not None:
            return 0
        with self._build_lock:
            added = 0
            while (got := self._extend(CHUNK)) > 0:
                added += got
                if got < CHUNK:
                    break
            return added

    @property
    def count(self) -> int:
        return self.index.count

    @property
    def start_us(self) -> int:
        return self.summary.start_us if self.summary else self.index.times[0]

    def position_of_seq(self, seq: int) -> int:
        """The position of `seq`, or of the last record before it."""
        return max(0, bisect.bisect_right(self.index.seqs, seq, 0, self.index.count) - 1)

    def position_at(self, time_us: int) -> int:
        """The last position at or before `time_us` (0 when the session starts later)."""
        return max(0, bisect.bisect_right(self.index.mono, time_us, 0, self.index.count) - 1)

    def offset_us(self, position: int) -> int:
        return self.index.times[position] - self.start_us

    # -- records ------------------------------------------------------------------------------

    def _page(self, number: int) -> list[Record]:
        with self._lock:
            cached = self._cache.get(number)
            if (
                cached is not None
                and len(cached) < self.page
                and number * self.page + len(cached) < self.index.count
            ):
                cached = None  # read while the index (or a live session) was shorter
            if cached is not None:
                self._cache.move_to_end(number)
                return cached
        if self._single is not None:
            records = [self._single]
        else:
            first = number * self.page
            last = min(first + self.page, self.index.count) - 1
            if last < first:
                return []
            seqs = self.index.seqs
            records = list(
                self.store.iter_records(
                    from_seq=seqs[first],
                    to_seq=seqs[last],
                    session_id=self.session_id,
                    batch=self.page,
                )
            )
        with self._lock:
            self._cache[number] = records
            while len(self._cache) > self.cache_pages:
                self._cache.popitem(last=False)
        return records

    def record(self, position: int) -> Record:
        if not 0 <= position < self.index.count:
            raise IndexError(position)
        page = self._page(position // self.page)
        return page[position % self.page]

    def records(self, start: int, stop: int) -> Iterator[tuple[int, Record]]:
        """(position, record) for positions start..stop-1, a page at a time."""
        start = max(start, 0)
        stop = min(stop, self.index.count)
        position = start
        while position < stop:
            page = self._page(position // self.page)
            base = (position // self.page) * self.page
            for offset in range(position - base, min(len(page), stop - base)):
                yield base + offset, page[offset]
            position = base + self.page

    def stream(self, batch: int = 1000) -> Iterator[tuple[int, Record]]:
        """Every record with its position, straight from the store (no cache): for search,
        transcripts and exports, which read a session once from start to end."""
        if self._single is not None:
            yield 0, self._single
            return
        records = self.store.iter_records(session_id=self.session_id, batch=batch)
        yield from enumerate(records)

    # -- navigation ---------------------------------------------------------------------------

    def next_command(self, position: int, step: int = 1) -> int | None:
        """The next (step=1) or previous (step=-1) position holding a command."""
        index = self.index
        candidates = set(
            index.ids_of(
                lambda k: (
                    k != TERM_INPUT
                    and k.endswith((".statement", ".blocked", ".exec", ".command", "http.request"))
                )
            )
        )
        input_id = index.id_of(TERM_INPUT)
        request_id, response_id = index.id_of("http.request"), index.id_of("http.response")
        if response_id >= 0:
            candidates.add(response_id)
        kinds, enters = index.kinds, index.enters
        pos = position + step
        while pos >= 0:
            if pos >= index.count:
                if index.complete:
                    break
                self.build()  # waits for a building worker, or finishes the index here
                continue
            kid = kinds[pos]
            if kid == response_id and not self._unannounced(pos, request_id, response_id):
                pass  # its request is the stop (write_ahead="changes" records safe ones once)
            elif (kid == input_id and enters[pos]) or (
                kid in candidates and is_command(self.record(pos))
            ):
                return pos
            pos += step
        return None

    def _unannounced(self, pos: int, request_id: int, response_id: int) -> bool:
        """Whether the http.response at `pos` answers a request with no record of its own:
        none since the previous response (exchanges on one connection never overlap)."""
        kinds = self.index.kinds
        if request_id < 0:
            return True
        return kinds.rfind(bytes([request_id]), 0, pos) <= kinds.rfind(bytes([response_id]), 0, pos)

    def last_resize(self, position: int) -> Record | None:
        """The latest `term.resize` at or before `position`."""
        resize = self.index.id_of(TERM_RESIZE)
        found = self.index.kinds.rfind(bytes([resize]), 0, position + 1) if resize >= 0 else -1
        return self.record(found) if found >= 0 else None

    def first_of(self, kinds: tuple[str, ...]) -> int | None:
        ids = [self.index.id_of(k) for k in kinds]
        hits = [p for p in (self.index.kinds.find(bytes([i])) for i in ids if i >= 0) if p >= 0]
        return min(hits) if hits else None
