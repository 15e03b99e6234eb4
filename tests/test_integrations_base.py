"""The integrations' base and the Celery integration's publish side, in process (the worker side runs for real in
tests/test_integrations_celery.py)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import strategies as st

from observability_app.context import bound
from observability_app.integrations import base
from observability_app.integrations import celery as celery_integration


class _Missing(base.Integration):
    name = "Imaginary"
    library = "observability_no_such_library"
    extra = "imaginary"

    def setup(self, *args, **kwargs):
        raise AssertionError("never reached")


def test_a_missing_library_names_the_extra():
    with pytest.raises(ImproperlyConfigured, match=r"pip install 'observability_app\[imaginary\]'"):
        _Missing().install()


def test_install_is_idempotent_and_configures_the_app():
    from example_project.celery import app

    first = celery_integration.install(app)
    assert celery_integration.install(app) is first and first.installed
    assert app.conf.worker_redirect_stdouts is False
    assert [a for a in first.apps if a is app] == [app]


def test_headers_carry_the_request_ids_not_the_payload():
    integration = celery_integration.integration()
    headers: dict = {}
    with bound(correlation_id="abc", request_id="req-1"):
        integration.before_publish(sender="t", headers=headers, body=((), {"x": 1}, {}))
    assert headers[celery_integration.HEADER_CORRELATION] == "abc"
    assert headers[celery_integration.HEADER_REQUEST] == "req-1"
    assert isinstance(headers[celery_integration.HEADER_PUBLISHED], float)
    outside: dict = {}
    integration.before_publish(sender="t", headers=outside)
    assert len(outside[celery_integration.HEADER_CORRELATION]) == 32  # a correlation of its own (beat, scripts)
    assert outside[celery_integration.HEADER_REQUEST] == ""


@given(value=st.one_of(st.none(), st.integers(), st.text(max_size=400), st.lists(st.integers(), max_size=3)))
def test_hostile_headers_given_by_a_publisher_are_replaced(value):
    integration = celery_integration.integration()
    headers = {celery_integration.HEADER_CORRELATION: value}
    with bound(correlation_id="from-context", request_id="r"):
        integration.before_publish(sender="t", headers=headers)
    kept = headers[celery_integration.HEADER_CORRELATION]
    assert kept == value or kept == "from-context"
    assert isinstance(kept, str) and len(kept) <= 128 and "\n" not in kept


def test_published_at_honours_a_later_eta_and_refuses_garbage():
    assert celery_integration._published_at(100.0, None) == 100.0
    assert celery_integration._published_at(100.0, "2030-01-01T00:00:00+00:00") > 1.8e9
    assert celery_integration._published_at("100", None) is None
    assert celery_integration._published_at(True, None) is None
    assert celery_integration._published_at(100.0, "not a date") == 100.0
