"""Just-in-time approvals: access requests (grants for a while) and held statements.

Layout (imports flow downwards only; docs/approvals.md tells the flows):
- `models`: the request and vote values, statuses and their JSON views;
- `rules`: pure decisions — who may approve, what a vote does, when a grant is live;
- `filing`: pure — the checks before a request is filed, and what a new request holds;
- `store`: the `approval_requests` / `approval_votes` tables in the broker's store database
  (SQLite or PostgreSQL, the audit store's URL; the audit tables are never touched);
- `wakeups`: how a broker learns that another one decided (LISTEN/NOTIFY, else polling);
- `notify`: Slack-compatible webhooks, retried with backoff, never in the way;
- `grants`: the grants this broker's sessions ride on, and ending those sessions;
- `changes`: how a request changes — under the store's row lock, written to the audit trail
  and announced once, and only then heard of by its waiters;
- `service`: the broker's `Approvals` service that ties them together and writes every step
  to the audit trail;
- `text`: how a request reads in one line (CLI, `request watch`).

Nothing here imports the gateway or a protocol plugin; they call `service`.
"""
