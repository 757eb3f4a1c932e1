"""The http plugin's pure parts: canonical paths, rules, header rewriting, bodies, scrubbing."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jitctl.config import HttpOptions, Mask, Rule, RuleMatch
from jitctl.masking import MaskPolicy
from jitctl_http import bodies, headers
from jitctl_http.policy import AmbiguousPath, HttpPolicy, canonical_path


def target(*rules: Rule, default: str = "allow") -> SimpleNamespace:
    return SimpleNamespace(rules=list(rules), default_action=default)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/a/b?x=1", ("/a/b", "x=1")),
        ("/a%20b/", ("/a b/", "")),
        ("/", ("/", "")),
        ("*", ("*", "")),
    ],
)
def test_canonical_paths_are_decoded_and_split_from_the_query(
    raw: str, expected: tuple[str, str]
) -> None:
    assert canonical_path(raw) == expected


@pytest.mark.parametrize(
    "raw", ["/a/../admin", "/a/%2e%2e/admin", "//admin", "/a/./b", "/a%5cb", "http://x/a", "/a%00"]
)
def test_ambiguous_paths_are_refused(raw: str) -> None:
    with pytest.raises(AmbiguousPath):
        canonical_path(raw)


@given(st.text())
def test_any_request_target_gives_a_path_or_ambiguous_path(raw: str) -> None:
    try:
        path, _ = canonical_path(raw)
    except (AmbiguousPath, UnicodeDecodeError):
        return
    assert "/../" not in path + "/" and "//" not in path


def test_the_first_matching_rule_decides_and_names_itself() -> None:
    policy = HttpPolicy.from_target(
        target(
            Rule(name="no-deletes", match=RuleMatch(method=["delete"]), action="deny"),
            Rule(match=RuleMatch(path=["/admin*"]), action="approve", approvers=["x"]),
        )
    )
    assert policy.decide("DELETE", "/x").rule == "no-deletes"
    assert policy.decide("GET", "/admin/users").action == "approve"
    assert policy.decide("GET", "/admin/users").rule == "rule 2"
    assert policy.decide("GET", "/ok").rule == "default_action"


def test_body_rules_read_the_body_only_when_they_could_decide() -> None:
    policy = HttpPolicy.from_target(
        target(
            Rule(
                name="prod",
                match=RuleMatch(method=["POST"], body={"spec.env": ["prod*"]}),
                action="deny",
            )
        )
    )
    assert policy.needs_body("POST", "/jobs") and not policy.needs_body("GET", "/jobs")
    assert policy.decide("POST", "/j", b'{"spec": {"env": "production"}}').action == "deny"
    assert policy.decide("POST", "/j", b'{"spec": {"env": "dev"}}').action == "allow"
    assert policy.decide("POST", "/j", b"not json").action == "deny"  # fail closed
    assert policy.decide("POST", "/j", None).action == "deny"  # too large to read


def test_group_rules_apply_to_their_groups_only() -> None:
    rule = Rule(match=RuleMatch(groups=["contractors"]), action="deny")
    assert HttpPolicy.from_target(target(rule), ["contractors"]).decide("GET", "/").action == "deny"
    assert HttpPolicy.from_target(target(rule), ["staff"]).decide("GET", "/").action == "allow"


def test_client_credentials_are_dropped_and_the_brokers_injected() -> None:
    options = HttpOptions(auth_header="X-Api-Key", auth_scheme="", drop_headers=["X-Session"])
    injected = headers.credential_header(options, {"token": "k"})
    sent = [
        (b"Host", b"127.0.0.1:9"),
        (b"Authorization", b"Bearer mine"),
        (b"x-api-key", b"mine"),
        (b"X-Session", b"s"),
        (b"Cookie", b"a=b"),
        (b"Connection", b"keep-alive, X-Hop"),
        (b"X-Hop", b"1"),
        (b"Accept", b"*/*"),
    ]
    out, dropped = headers.to_upstream(sent, options, b"api:80", injected)
    assert out == [(b"host", b"api:80"), (b"Accept", b"*/*"), (b"X-Api-Key", b"k")]
    assert dropped == ["authorization", "cookie", "x-api-key", "x-session"]


def test_basic_auth_uses_the_credential_user() -> None:
    options = HttpOptions(auth_scheme="Basic")
    name, value = headers.credential_header(options, {"user": "u", "password": "p"}) or (b"", b"")
    assert (name, value) == (b"Authorization", b"Basic dTpw")


def test_recorded_headers_redact_secrets() -> None:
    options = HttpOptions(record_headers=["authorization", "x-auth-token", "accept", "set-cookie"])
    kept = headers.for_record(
        [(b"Authorization", b"x"), (b"X-Auth-Token", b"y"), (b"Accept", b"a"), (b"X-Other", b"z")],
        options,
    )
    assert kept == {"authorization": "[REDACTED]", "x-auth-token": "[REDACTED]", "accept": "a"}


def test_json_bodies_are_masked_by_field_name_and_detector() -> None:
    masks = [Mask(columns=["users.ssn"], detectors=["EMAIL_ADDRESS"])]
    policy = MaskPolicy.from_config(masks)
    body = json.dumps({"ssn": "1", "note": "mail ada@example.com", "id": 3}).encode()
    masked, counts = bodies.mask_body(body, b"application/json", policy, bodies.field_names(masks))
    document = json.loads(masked)
    assert document["ssn"] == "[MASKED]" and "ada@example.com" not in document["note"]
    assert document["id"] == 3 and counts["FIELD:ssn"] == 1


def test_a_cut_json_body_with_field_masks_is_withheld_from_the_trail() -> None:
    masks = [Mask(columns=["ssn"])]
    capture = bodies.Capture(10)
    capture.feed(b'{"ssn": "123-45-6789"}')
    text, _ = bodies.for_record(
        capture, b"application/json", MaskPolicy.from_config(masks), bodies.field_names(masks)
    )
    assert text == "[WITHHELD]" and capture.size == 22


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_the_brokers_secret_is_scrubbed_across_any_chunking(step: int) -> None:
    secret = b"s3cr3t-token-value"
    stream = b"head " + secret + b" middle " + secret + b" tail"
    scrub = bodies.Scrub([secret])
    out = b"".join(scrub.feed(stream[i : i + step]) for i in range(0, len(stream), step))
    out += scrub.flush()
    assert len(out) == len(stream) and secret not in out and scrub.found == 2


def test_the_scrubber_holds_back_only_an_end_a_secret_could_start_with() -> None:
    scrub = bodies.Scrub([b"s3cr3t-token-value"])
    assert scrub.feed(b"data: event 1\n\n") == b"data: event 1\n\n"  # nothing waits
    assert scrub.feed(b"data: s3cr3t-to") == b"data: "  # could be the secret: waits
    assert scrub.feed(b"ken-value\n") == b"*" * 18 + b"\n"
    assert scrub.feed(b"x s3") == b"x " and scrub.feed(b"cond") == b"s3cond"


def test_a_secret_holding_another_is_left_to_the_shorter_so_its_first_byte_never_waits() -> None:
    # The injected header value (`Bearer <token>`) is a secret beside the token: replacing the
    # token already hides it, and as a secret of its own every read ending in "B" waited.
    scrub = bodies.Scrub([b"Bearer s3cr3t-token-value", b"s3cr3t-token-value"])
    assert scrub.secrets == [b"s3cr3t-token-value"]
    assert scrub.feed(b"ping from B") == b"ping from B"
    out = scrub.feed(b"Authorization: Bearer s3cr3t-token-value\n") + scrub.flush()
    assert out == b"Authorization: Bearer " + b"*" * 18 + b"\n" and scrub.found == 1


_PIECES = [b"s3cr3t-token-value", b"s3cr3", b"t-token", b"-value", b"s", b"\n"]


@given(st.lists(st.sampled_from(_PIECES)), st.integers(1, 40))
def test_no_chunking_lets_a_secret_or_a_cut_one_through(pieces: list[bytes], step: int) -> None:
    secret = b"s3cr3t-token-value"
    stream = b"".join(pieces)
    scrubbed = stream.replace(secret, b"*" * len(secret))
    scrub = bodies.Scrub([secret])
    out = b""
    for i in range(0, len(stream), step):
        out += scrub.feed(stream[i : i + step])
        assert scrubbed.startswith(out)  # nothing left that a later chunk would have scrubbed
    assert out + scrub.flush() == scrubbed


def test_credential_query_parameters_are_redacted_for_the_trail() -> None:
    query = "q=1&access_token=abc&key=k&page=2&flag"
    assert headers.query_for_record(query) == (
        "q=1&access_token=[REDACTED]&key=[REDACTED]&page=2&flag"
    )


def test_without_detectors_a_body_naming_no_masked_field_is_returned_as_it_is() -> None:
    masks = [Mask(columns=["ssn"])]
    policy = MaskPolicy.from_config(masks)
    fields = bodies.field_names(masks)
    body = b'{"name": "Ada",  "note": "spacing kept"}'
    masked, counts = bodies.mask_body(body, b"application/json", policy, fields)
    assert masked is body and not counts
    for named in (b'{"SSN": "1"}', b'{"\\u0073sn": "1"}', b'{"a": {"Ssn": [1]}}'):
        masked, counts = bodies.mask_body(named, b"application/json", policy, fields)
        assert b"[MASKED]" in masked and counts, named


_NAMES = st.sampled_from(["ssn", "SSN", "Ssn", "ß", "ss", "note", "id", "é"])
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | _NAMES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_NAMES, inner, max_size=3),
    max_leaves=12,
)


@given(document=_JSON, ascii_only=st.booleans(), columns=st.sampled_from([["ssn"], ["ss"]]))
def test_masking_by_field_name_alone_finds_what_walking_the_document_finds(
    document: object, ascii_only: bool, columns: list[str]
) -> None:
    from jitctl.masking import mask_json

    masks = [Mask(columns=columns)]
    policy, fields = MaskPolicy.from_config(masks), bodies.field_names(masks)
    body = json.dumps(document, ensure_ascii=ascii_only).encode()
    masked, counts = bodies.mask_body(body, b"application/json", policy, fields)
    expected, expected_counts = mask_json(document, fields, policy)
    assert counts == expected_counts
    assert json.loads(masked) == (expected if expected_counts else document)
