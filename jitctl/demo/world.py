"""The demo's world: the broker's configuration, the customer data and the agent's script.

Rules:
- Two development users: alice (eng, agents) runs the agent, bob (dba, approvers) approves.
- The postgres target `shop-db` reaches a throwaway database as an upstream user whose password
  only the broker's environment holds (`DEMO_PG_PASSWORD`). Its policy masks emails, card
  numbers and SSNs (by column and by detector), denies DROP and TRUNCATE, and holds ALTER and
  CREATE for a DBA's approval; three result rows per statement are kept in the trail.
- Without PostgreSQL the target is `echo`, a tcp echo service standing in for an internal system.
- The agent knows DATABASE_URL only: it SELECTs (masked), DROPs (blocked), ALTERs (held, then
  approved) and prints what happened, so the demo's output tells the story.
- Target templates are `str.format` templates: literal braces are doubled.
"""

from __future__ import annotations

USERS = """
[dev]
users = [
  { name = "alice", email = "alice@example.com", groups = ["eng", "agents"] },
  { name = "bob", email = "bob@example.com", groups = ["dba", "approvers"] },
]
"""

PG_TARGET = """
[[targets]]
name = "shop-db"
protocol = "postgres"
address = "127.0.0.1:{port}"
description = "production-like customer database (a throwaway copy)"
allow_groups = ["agents", "dba"]
record_rows = 3
credential = {{ user = "{user}", password_env = "DEMO_PG_PASSWORD", database = "shop" }}
postgres = {{ tls = "verify-full", tls_ca_file = "{ca_file}" }}

[targets.access]
approvers = ["dba"]
approval_timeout = "45s"

[[targets.rules]]
name = "no-destruction"
match = {{ statement = ["drop", "truncate"] }}
action = "deny"

[[targets.rules]]
name = "schema-changes-need-a-dba"
match = {{ statement = ["alter", "create"] }}
action = "approve"
approvers = ["dba"]

[[targets.masks]]
columns = ["customers.email", "*.ssn", "customers.card_number"]
detectors = ["EMAIL_ADDRESS", "CREDIT_CARD_NUMBER", "US_SOCIAL_SECURITY_NUMBER"]
"""

TCP_TARGET = """
[[targets]]
name = "echo"
protocol = "tcp"
address = "{echo}"
description = "a TCP echo service standing in for an internal system"
allow_groups = ["agents"]
"""

CUSTOMERS = [
    ("Ada Lovelace", "ada@example.com", "4111 1111 1111 1111", "123-45-6789"),
    ("Grace Hopper", "grace@navy.example", "5555 5555 5555 4444", "234-56-7890"),
    ("Alan Turing", "alan@bletchley.example", "4012 8888 8888 1881", "345-67-8901"),
]

AGENT = '''
"""A tiny "AI agent": it only knows DATABASE_URL. It never sees a password."""
import os
import psycopg

conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
print("agent> SELECT name, email, card_number, ssn FROM customers")
for row in conn.execute("SELECT name, email, card_number, ssn FROM customers ORDER BY id"):
    print("       ", row)
print("agent> DROP TABLE customers")
try:
    conn.execute("DROP TABLE customers")
    print("        dropped?!")
except psycopg.Error as exc:
    print("        blocked:", exc.diag.sqlstate, exc.diag.message_primary)
print("agent> ALTER TABLE customers ADD COLUMN loyalty_tier text   (needs a DBA)")
conn.add_notice_handler(lambda n: print("        notice:", n.message_primary))
try:
    conn.execute("ALTER TABLE customers ADD COLUMN loyalty_tier text")
    print("        done: the ALTER ran after approval")
except psycopg.Error as exc:
    print("        refused:", exc.diag.sqlstate, exc.diag.message_primary)
'''
