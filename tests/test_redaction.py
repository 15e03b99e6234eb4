"""Redaction of secrets: keys at any depth, configured fields, headers, free text."""

from __future__ import annotations

from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st

from observability_app.redaction import REDACTED, is_secret_key, redact, redact_headers, redact_value, scrub_text


def test_secret_keys_are_redacted_at_any_depth():
    data = {"user": "alice", "password": "x", "meta": {"API-Key": "y", "list": [{"refresh_token": "z"}]}, "n": 1}
    assert redact(data) == {
        "user": "alice",
        "password": REDACTED,
        "meta": {"API-Key": REDACTED, "list": [{"refresh_token": REDACTED}]},
        "n": 1,
    }
    assert data["password"] == "x"  # the input is not modified


def test_configured_fields_are_redacted_too():
    assert not is_secret_key("ssn")
    with override_settings(OBSERVABILITY={"REDACT_FIELDS": ["ssn", "Date-Of-Birth"]}):
        assert redact({"ssn": "123", "date_of_birth": "1990", "name": "a"}) == {
            "ssn": REDACTED,
            "date_of_birth": REDACTED,
            "name": "a",
        }
    assert not is_secret_key("ssn")


def test_headers_and_values():
    headers = redact_headers({"Authorization": "Bearer x", "Cookie": "a=b", "X-Api-Key": "k", "Accept": "*/*"})
    assert headers == {"Authorization": REDACTED, "Cookie": REDACTED, "X-Api-Key": REDACTED, "Accept": "*/*"}
    assert redact_value("DB_PASSWORD", "pw") == REDACTED
    assert redact_value("LIMIT", {"token": 1}) == {"token": REDACTED}


def test_free_text_pairs_are_masked():
    assert scrub_text("password=hunter2 user=bob") == f"password={REDACTED} user=bob"
    assert scrub_text("Authorization: Bearer abc.def") == f"Authorization: {REDACTED}"
    assert scrub_text("no secrets here") == "no secrets here"


def test_hostile_depth_is_bounded():
    node: dict = {}
    root = node
    for _ in range(500):
        node["child"] = {}
        node = node["child"]
    out = redact(root)
    depth = 0
    while isinstance(out, dict) and "child" in out:
        out, depth = out["child"], depth + 1
    assert depth <= 17 and out == REDACTED


@given(
    st.recursive(
        st.text(max_size=10) | st.integers(),
        lambda c: st.dictionaries(st.text(max_size=12), c) | st.lists(c),
        max_leaves=30,
    )
)
def test_no_secret_key_survives(value):
    def walk(v):
        if isinstance(v, dict):
            for key, item in v.items():
                if is_secret_key(key):
                    assert item == REDACTED
                else:
                    walk(item)
        elif isinstance(v, list):
            for item in v:
                walk(item)

    walk(redact({"wrapper": value, "token": value}))


def test_prefixed_secret_names_in_free_text_are_masked_too():
    # A request's repr in a Sentry stack frame: "<WSGIRequest: GET '/x?api_token=...'>".
    text = "GET /x?api_token=tok-1&page=2 x-auth-token: tok-2 db_password=pw-3 tokenizer=kept"
    scrubbed = scrub_text(text)
    assert not any(secret in scrubbed for secret in ("tok-1", "tok-2", "pw-3"))
    assert "page=2" in scrubbed and "tokenizer=kept" in scrubbed
