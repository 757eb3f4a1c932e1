"""The http benchmark's in-process shell run (`bench_http.py --shell`) still drives the real
http shell: the benchmarks are not run by the suite, and an interface change once broke it
unnoticed (the shell asked its upstream for something the benchmark's fake lacked)."""

from __future__ import annotations

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_the_http_shell_benchmark_answers_every_request() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import bench_http
    finally:
        sys.path.remove(str(BENCHMARKS))
    figures = bench_http.shell_run(200)  # raises unless every request was answered
    assert figures["requests"] == 200
    # A GET is written ahead as http.request, then http.response; with write_ahead =
    # "changes" a read leaves only its http.response.
    assert figures["all"]["records"] == 2 and figures["changes"]["records"] == 1
