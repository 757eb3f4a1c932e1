"""Value masking shared by the Postgres, SSH and HTTP gateways: pure, fast, fail-closed.

No I/O and no asyncio: bytes and strings in, masked bytes and strings plus counts out.

- `MaskPolicy.from_config(target.masks)` compiles a target's masks once.
- `policy.row_masker(columns)` per result shape; `RowMasker.mask_row` / `mask_rows` per row.
- `policy.mask_text` for errors, notices, terminal output and bodies; `policy.mask_copy_line`
  for COPY OUT; `mask_json` for parsed JSON documents.
- Counts name what was masked (`EMAIL_ADDRESS`, `COLUMN:email`, `FIELD:ssn`, `WITHHELD`),
  never the values: they are what the audit record keeps.

docs/masking.md is the user-facing description (detectors, rules, markers, limits).
"""

from __future__ import annotations

from jitctl.masking.detectors import DETECTORS, Detector, UnknownDetector, known_detectors
from jitctl.masking.jsonmask import mask_json
from jitctl.masking.rows import MASKED, WITHHELD, WITHHELD_COUNT, RowMasker
from jitctl.masking.rules import BadColumnPattern, ColumnRule, MaskPolicy
from jitctl.masking.scanner import ENGINE, Scanner

__all__ = [
    "DETECTORS",
    "ENGINE",
    "MASKED",
    "WITHHELD",
    "WITHHELD_COUNT",
    "BadColumnPattern",
    "ColumnRule",
    "Detector",
    "MaskPolicy",
    "RowMasker",
    "Scanner",
    "UnknownDetector",
    "known_detectors",
    "mask_json",
]
