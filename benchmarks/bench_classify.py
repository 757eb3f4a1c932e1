"""Statement classification: µs per `classify` on a cache miss and on a hit, and per decision.

    python benchmarks/bench_classify.py            # full run (about 10 s)
    python benchmarks/bench_classify.py --quick    # a few seconds

Peers, measured in the same run on the same texts: pglast's `parse_sql_json` alone (the floor:
libpg_query's C parse) and `parse_sql_json` + `json.loads` (what any dict-walking classifier
pays before it starts walking). notes/postgres-wire.md §10 measured 2.7 / 16.4 / 130 µs
(parse_sql_json) and 9.2 / 50.8 / 550 µs (+ json.loads) for the same three shapes, and a 39 µs
prototype classifier for a 92-character join.

Misses use a distinct literal per call (inlined literals are what miss the cache in real
traffic), so every call parses and walks; hits repeat one text. Each figure is the median of
`REPEATS` batches.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if importlib.util.find_spec("jitctl_postgres") is None:  # editable install predating the plugin
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plugins"))

from pglast import parser

from jitctl.config import Rule
from jitctl_postgres.classify import classify
from jitctl_postgres.policy import Policy

REPEATS = 5

SHORT = "SELECT abalance FROM pgbench_accounts WHERE aid={i}"
MEDIUM = (
    "SELECT c.name, count(o.id) AS orders, sum(i.amount) AS total "
    "FROM customers c JOIN orders o ON o.customer_id = c.id "
    "JOIN order_items i ON i.order_id = o.id "
    "WHERE o.created_at > now() - interval '30 days' AND c.region = 'eu-{i}' "
    "GROUP BY c.name HAVING sum(i.amount) > 100 ORDER BY total DESC LIMIT 20"
)
_ARM = (
    "SELECT a.aid, a.abalance, b.bbalance, t.tbalance, h.delta, h.mtime "
    "FROM pgbench_accounts a JOIN pgbench_branches b ON b.bid = a.bid "
    "JOIN pgbench_tellers t ON t.bid = b.bid LEFT JOIN pgbench_history h ON h.aid = a.aid "
    "WHERE a.aid BETWEEN {i} AND {i} + 100 AND b.bbalance > 0 AND t.tbalance < 1000"
)
LONG = "\nUNION\n".join([_ARM] * 8)
SHAPES = {"short": SHORT, "medium": MEDIUM, "long": LONG}
NOTES = {  # notes §10 [m]: (parse_sql_json, + json.loads) µs
    "short": (2.7, 9.2),
    "medium": (16.4, 50.8),
    "long": (130.0, 550.0),
}


def _per_call_us(fn: Callable[[Any], Any], items: Sequence[Any]) -> float:
    """Median over REPEATS batches of the µs per call of `fn` over `items`."""
    samples = []
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for item in items:
            fn(item)
        samples.append((time.perf_counter_ns() - start) / len(items) / 1000)
    return statistics.median(samples)


def _fresh_classify(template: str, first: int, calls: int) -> Callable[[Any], Any]:
    """`classify` of a new text (distinct literal) on every call, so each one misses the cache."""
    fresh = iter([template.format(i=first + k) for k in range(calls)])
    return lambda _ignored: classify(next(fresh))


def _parse_and_load(text: str) -> Any:
    return json.loads(parser.parse_sql_json(text))


def run(quick: bool = False) -> dict[str, Any]:
    """Figures in µs per call (see the module docstring); keys end in `_us`."""
    counts = {"short": 2000, "medium": 1000, "long": 150}
    if quick:
        counts = {shape: max(30, n // 10) for shape, n in counts.items()}
    result: dict[str, Any] = {}
    for base, (shape, template) in enumerate(SHAPES.items(), start=1):
        texts = [template.format(i=i) for i in range(counts[shape])]
        result[f"{shape}_chars"] = len(texts[0])
        result[f"{shape}_parse_sql_json_us"] = _per_call_us(parser.parse_sql_json, texts)
        result[f"{shape}_parse_and_json_loads_us"] = _per_call_us(_parse_and_load, texts)
        miss = _fresh_classify(template, base * 10_000_000, len(texts) * REPEATS)
        result[f"{shape}_classify_miss_us"] = _per_call_us(miss, texts)
        notes_parse, notes_load = NOTES[shape]
        result[f"{shape}_notes_parse_sql_json_us"] = notes_parse
        result[f"{shape}_notes_parse_and_json_loads_us"] = notes_load

    hit_text = SHORT.format(i=1)
    classify(hit_text)
    hits = [hit_text] * (20_000 if not quick else 2_000)
    result["classify_hit_us"] = _per_call_us(classify, hits)

    policy = Policy(
        [
            Rule.model_validate({"match": {"statement": ["drop", "truncate"]}, "action": "deny"}),
            Rule.model_validate({"match": {"statement": ["alter", "create"]}, "action": "approve"}),
        ]
    )
    groups = ("eng",)
    hit_classification = classify(hit_text)
    result["decide_hit_us"] = _per_call_us(
        lambda _t: policy.decide(hit_classification, groups), hits
    )
    # More distinct classifications than the decision cache holds: every decide call misses.
    misses = [classify(SHORT.format(i=i)) for i in range(max(len(hits), 5_000))]
    it = iter(misses * REPEATS)
    result["decide_miss_us"] = _per_call_us(lambda _t: policy.decide(next(it), groups), misses)
    result["classify_and_decide_hit_us"] = _per_call_us(
        lambda t: policy.decide(classify(t), groups), hits
    )
    return result


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--quick", action="store_true", help="fewer iterations")
    quick = args.parse_args(argv).quick
    figures = run(quick=quick)
    print(f"{'shape':8} {'chars':>6} {'parse_sql_json':>15} {'+json.loads':>12} {'classify':>10}")
    for shape in SHAPES:
        print(
            f"{shape:8} {figures[f'{shape}_chars']:>6} "
            f"{figures[f'{shape}_parse_sql_json_us']:>12.1f} µs "
            f"{figures[f'{shape}_parse_and_json_loads_us']:>9.1f} µs "
            f"{figures[f'{shape}_classify_miss_us']:>7.1f} µs"
            f"   (notes: {NOTES[shape][0]} / {NOTES[shape][1]} µs)"
        )
    print(f"classify, cache hit:          {figures['classify_hit_us']:.2f} µs")
    print(f"decide, cache hit:            {figures['decide_hit_us']:.2f} µs")
    print(f"decide, cache miss:           {figures['decide_miss_us']:.2f} µs")
    print(f"classify + decide, both hits: {figures['classify_and_decide_hit_us']:.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
