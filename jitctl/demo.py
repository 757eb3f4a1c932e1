"""The `jitctl demo` script (grows with the product)."""

from __future__ import annotations


def run_demo(keep: bool = False) -> None:
    raise NotImplementedError
