"""`jitctl request watch`: a live Textual view for approvers (imported only by that command).

- `source`: where pending requests come from and decisions go (the broker API, read in worker
  threads; tests pass their own);
- `widgets/pending`: the table of pending requests; `widgets/detail`: the exact text and who
  asks; `screens/reason`: the reason prompt; `app`: the short App that wires them.
Styles live in review.tcss, shipped as package data.
"""
