"""`jitctl replay`: reading recorded sessions back (docs/replay.md).

Layout (imports flow downwards only; only `app`, `screens` and `widgets` import Textual):
- `kinds`: what each record kind looks like (tag, category, summary, details), pure;
- `reader`: the lazy session reader (index + pages), `search`, `player`, `timefmt`: plain Python;
- `terminal`: the pyte screen at any position, with keyframes; `chain`: the session's verdict;
- `transcript` (`--print`/`--json`), `exporting` (asciicast, JSONL), `catalog` (the picker's list);
- `app`, `screens/`, `widgets/`, `replay.tcss`: the Textual TUI;
- `samples`: made-up sessions with fixed times for tests, benchmarks and docs.
"""
