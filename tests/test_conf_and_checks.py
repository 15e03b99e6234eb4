"""The settings object and the system checks that validate it."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.test import override_settings

from observability_app import checks
from observability_app.conf import DEFAULTS, build_settings, settings


def ids(messages):
    return sorted(message.id for message in messages)


def test_defaults_apply_and_settings_dict_overrides():
    conf = build_settings({"SERVICE_NAME": "svc"}, environ={})
    assert conf.SERVICE_NAME == "svc"
    assert DEFAULTS["LOG_LEVEL"] == conf.LOG_LEVEL
    assert conf.sources["SERVICE_NAME"] == "settings"
    with pytest.raises(AttributeError, match="no setting 'NOPE'"):
        _ = conf.NOPE


def test_environment_variables_override_the_dict():
    conf = build_settings(
        {"LOG_LEVEL": "INFO", "ENVIRONMENT": "dev"},
        environ={
            "OBSERVABILITY_LOG_LEVEL": "DEBUG",
            "OBSERVABILITY_ENVIRONMENT": "production",
            "OBSERVABILITY_ACCESS_LOG_SAMPLE_RATE": "0.25",
            "OBSERVABILITY_TRACING_ENABLED": "yes",
            "OTEL_SERVICE_NAME": "from-otel",
        },
    )
    assert (conf.LOG_LEVEL, conf.ENVIRONMENT, conf.ACCESS_LOG_SAMPLE_RATE) == ("DEBUG", "production", 0.25)
    assert conf.TRACING_ENABLED is True
    assert conf.SERVICE_NAME == "from-otel"
    assert (
        build_settings({}, environ={"OTEL_SDK_DISABLED": "true", "OBSERVABILITY_TRACING_ENABLED": "1"}).TRACING_ENABLED
        is False
    )


def test_bad_environment_values_are_reported_not_raised():
    conf = build_settings(
        {}, environ={"OBSERVABILITY_ACCESS_LOG_SAMPLE_RATE": "lots", "OBSERVABILITY_TRACING_ENABLED": "maybe"}
    )
    assert len(conf.env_errors) == 2
    assert DEFAULTS["ACCESS_LOG_SAMPLE_RATE"] == conf.ACCESS_LOG_SAMPLE_RATE


def test_settings_object_follows_override_settings():
    assert settings.SERVICE_NAME == "artifact-bucket"
    with override_settings(OBSERVABILITY={"SERVICE_NAME": "other"}):
        assert settings.SERVICE_NAME == "other"
    assert settings.SERVICE_NAME == "artifact-bucket"


def test_example_project_passes_checks():
    assert checks.check_settings() == []
    assert checks.check_middleware() == []
    call_command("check")


@pytest.mark.parametrize(
    ("observability", "expected"),
    [
        ("not a dict", ["observability_app.E001"]),
        ({"NO_SUCH_KEY": 1}, ["observability_app.E001"]),
        ({"ACCESS_LOG_SAMPLE_RATE": 1.5}, ["observability_app.E003"]),
        ({"TRACE_SAMPLE_RATE": "half"}, ["observability_app.E003"]),
        ({"LOG_LEVEL": "LOUD"}, ["observability_app.E004"]),
        ({"TRUSTED_PROXIES": ["10.0.0.0/8", "not-a-net"]}, ["observability_app.E005"]),
        ({"TRUSTED_PROXIES": "10.0.0.0/8"}, ["observability_app.E011"]),
        ({"TRACE_EXPORTER": "zipkin"}, ["observability_app.E006"]),
        ({"AUDIT_RETENTION": {"NOT_A_TYPE": 5}}, ["observability_app.E007"]),
        ({"AUDIT_RETENTION": {"ARTIFACT_ACCESSED": -1}}, ["observability_app.E007"]),
        ({"AUDIT_RETENTION": []}, ["observability_app.E007"]),
        ({"AUDIT_MAX_PAYLOAD_BYTES": 0}, ["observability_app.E008"]),
        ({"AUDIT_PURGE_BATCH_SIZE": "many"}, ["observability_app.E008"]),
        ({"HEALTH_CHECK_TIMEOUT": -1}, ["observability_app.E008"]),
        ({"AUDIT_EVENT_TYPES": [{"required": []}]}, ["observability_app.E009"]),
        ({"AUDIT_EVENT_TYPES": [{"name": "X_Y", "colour": 1}]}, ["observability_app.E009"]),
        ({"SERVICE_NAME": ""}, ["observability_app.E010"]),
        ({"ENVIRONMENT": "production", "AUDIT_SIGNING_KEY": None}, ["observability_app.W003"]),
    ],
)
def test_misconfiguration_is_reported_with_stable_ids(observability, expected):
    with override_settings(OBSERVABILITY=observability, DEBUG=True):  # a development project
        assert ids(checks.check_settings()) == expected


def test_middleware_checks():
    with override_settings(MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"]):
        assert ids(checks.check_middleware()) == ["observability_app.W001"]
    with override_settings(MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware", checks.MIDDLEWARE_PATH]):
        assert ids(checks.check_middleware()) == ["observability_app.W002"]


def test_manage_py_check_fails_on_errors():
    with override_settings(OBSERVABILITY={"LOG_LEVEL": "LOUD"}), pytest.raises(SystemCheckError, match="E004"):
        call_command("check")
