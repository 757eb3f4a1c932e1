"""The broker's garbage-collector settings (jitctl.broker.run.tune_gc).

Run in a child interpreter: freezing and re-tuning the collector of the test process itself
would change how every later test's process collects.
"""

from __future__ import annotations

import json
import subprocess
import sys

from jitctl.broker.run import GC_THRESHOLDS


def test_tune_gc_freezes_start_up_and_spaces_out_full_collections() -> None:
    script = (
        "import gc, json\n"
        "from jitctl.broker.run import tune_gc\n"
        "before = gc.get_threshold()\n"
        "tune_gc()\n"
        "print(json.dumps({'before': before, 'after': gc.get_threshold(),"
        " 'frozen': gc.get_freeze_count(), 'tracked': len(gc.get_objects(2))}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    figures = json.loads(out)
    assert tuple(figures["before"]) == (700, 10, 10)  # CPython's default, which this replaces
    assert tuple(figures["after"]) == GC_THRESHOLDS
    assert GC_THRESHOLDS[2] > figures["before"][2]
    # What start-up built is frozen: the oldest generation starts (nearly) empty.
    assert figures["frozen"] > 1000
    assert figures["tracked"] < figures["frozen"] // 10
