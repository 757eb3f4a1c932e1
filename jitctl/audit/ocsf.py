"""OCSF (schema 1.1.0) view of audit records, for SIEMs: one JSON event per line.

Rules:
- Sessions and tunnel traffic are Network Activity (class 4001): session.start = Open (1),
  session.end = Close (2), session.denied = Refuse (5, status Failure, disposition Blocked),
  tcp.data = Traffic (6) with the chunk's length as bytes_out (up) or bytes_in (down).
- Every other kind (the trail's own audit.checkpoint / audit.pruned, and kinds later issues add)
  is API Activity (class 6003), activity Other (99), with the kind as `api.operation`.
- Raw data bytes are never exported here (they may be large); the event keeps the record's seq,
  hash, prev_hash and data_sha256 under `unmapped.jitctl`, so an event can be traced back to
  the verifiable JSONL export. docs/audit-schema.md has the table.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import IO, Any

from jitctl import __version__
from jitctl.audit.canonical import data_digest, dumps
from jitctl.audit.records import Record

OCSF_VERSION = "1.1.0"
NETWORK = (4, 4001, "Network Activity")
API = (6, 6003, "API Activity")
_NETWORK_ACTIVITIES = {
    "session.start": (1, "Open"),
    "session.end": (2, "Close"),
    "session.denied": (5, "Refuse"),
    "tcp.data": (6, "Traffic"),
}


def _endpoint(address: str) -> dict[str, Any]:
    """OCSF endpoint fields for "host:port": `ip` for an address, `hostname` for a name."""
    host, sep, port = address.rpartition(":")
    if not (sep and port.isdigit()):
        host, port = address, ""
    host = host.strip("[]")
    out: dict[str, Any] = {"ip" if _is_ip(host) else "hostname": host} if host else {}
    if port:
        out["port"] = int(port)
    return out


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def to_ocsf(record: Record) -> dict[str, Any]:
    kind, payload = record.kind, record.payload
    if kind in _NETWORK_ACTIVITIES:
        (category, class_uid, class_name), (activity, activity_name) = (
            NETWORK,
            _NETWORK_ACTIVITIES[kind],
        )
    else:
        (category, class_uid, class_name), (activity, activity_name) = API, (99, "Other")
    denied = kind == "session.denied"
    failed = denied or (kind == "session.end" and payload.get("status") == "error")
    event: dict[str, Any] = {
        "category_uid": category,
        "class_uid": class_uid,
        "class_name": class_name,
        "activity_id": activity,
        "activity_name": activity_name,
        "type_uid": class_uid * 100 + activity,
        "type_name": f"{class_name}: {activity_name}",
        "time": record.time_us // 1000,
        "severity_id": 3 if denied else 1,
        "severity": "Medium" if denied else "Informational",
        "status_id": 2 if failed else 1,
        "status": "Failure" if failed else "Success",
        "message": f"{kind} {record.target}".strip(),
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": "jitctl", "vendor_name": "jitctl", "version": __version__},
            "uid": str(record.seq),
            "log_name": "jitctl-audit",
        },
        "unmapped": {
            "jitctl": {
                "seq": record.seq,
                "kind": kind,
                "hash": record.hash,
                "prev_hash": record.prev_hash,
                "data_sha256": data_digest(record.data),
                "data_len": len(record.data),
                "payload": dict(payload),
            }
        },
    }
    if denied:
        event.update(disposition_id=2, disposition="Blocked", status_detail=payload.get("reason"))
    actor = record.actor
    if actor is not None:
        user: dict[str, Any] = {"uid": actor.subject, "name": actor.email or actor.subject}
        if actor.email:
            user["email_addr"] = actor.email
        if actor.groups:
            user["groups"] = [{"name": group} for group in actor.groups]
        event["actor"] = {"user": user}
        if actor.issuer:
            event["actor"]["idp"] = {"name": actor.issuer}
        if actor.agent:
            event["actor"]["app_name"] = actor.agent
        if actor.command:
            event["actor"]["process"] = {"cmd_line": actor.command}
        if actor.correlation_id:
            event["metadata"]["correlation_uid"] = actor.correlation_id
        if actor.client_addr:
            event["src_endpoint"] = _endpoint(actor.client_addr)
    if record.session_id:
        event.setdefault("actor", {})["session"] = {"uid": record.session_id}
    if record.target:
        destination: dict[str, Any] = {"name": record.target}
        upstream = payload.get("upstream")
        if isinstance(upstream, str) and upstream:
            destination.update(_endpoint(upstream))
        event["dst_endpoint"] = destination
    if class_uid == NETWORK[1]:
        protocol = payload.get("protocol")
        if protocol:
            event["connection_info"] = {"protocol_name": protocol}
        if kind == "session.end":
            event["traffic"] = {
                "bytes_out": int(payload.get("bytes_up") or 0),
                "bytes_in": int(payload.get("bytes_down") or 0),
            }
        elif kind == "tcp.data":
            direction = "bytes_out" if payload.get("dir") == "up" else "bytes_in"
            event["traffic"] = {direction: int(payload.get("len") or len(record.data))}
    else:
        event["api"] = {"operation": kind}
    return event


def export_ocsf(records: Iterable[Record], out: IO[str]) -> int:
    """Write one OCSF event per line; returns how many."""
    count = 0
    for record in records:
        out.write(dumps(to_ocsf(record)) + "\n")
        count += 1
    return count
