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


# -- issue 14: hot-path keys at start-up, production from DEBUG, LOG_LEVEL applied, renamed keys, JSON logging -----
def _run(args: list[str], tmp_path, timeout: float = 60, **env: str):
    import subprocess
    import sys

    from tests.servers import ROOT, server_env

    return subprocess.run(
        [sys.executable, *args],
        env=server_env(f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.gunicorn
@pytest.mark.parametrize(
    ("variable", "value", "key"),
    [
        ("OBSERVABILITY_ACCESS_LOG_SAMPLE_RATE", "2", "ACCESS_LOG_SAMPLE_RATE"),
        ("OBSERVABILITY_ACCESS_LOG_SAMPLE_RATE", "half", "OBSERVABILITY_ACCESS_LOG_SAMPLE_RATE"),
        ("OBSERVABILITY_LOG_FORMAT", "xml", "LOG_FORMAT"),
    ],
)
def test_a_wrong_hot_path_setting_stops_gunicorn_start_up_naming_the_key(tmp_path, variable, value, key):
    """Real gunicorn: the worker's ready() refuses the value, the master gives up, the error names the key."""
    result = _run(
        ["-m", "gunicorn", "example_project.wsgi:application", "--bind", "127.0.0.1:18301", "--workers", "1"],
        tmp_path,
        **{variable: value},
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and key in result.stderr, result.stderr[-2000:]


def test_a_wrong_hot_path_setting_in_the_dict_raises_in_ready_naming_the_key():
    from django.core.exceptions import ImproperlyConfigured

    from observability_app.conf import build_settings, validate_hot_path

    with pytest.raises(ImproperlyConfigured, match=r"TRUSTED_PROXIES.*not-a-network"):
        validate_hot_path(build_settings({"TRUSTED_PROXIES": ["not-a-network"]}, environ={}))
    with pytest.raises(ImproperlyConfigured, match="CORRELATION_ID_MAX_LENGTH"):
        validate_hot_path(build_settings({"CORRELATION_ID_MAX_LENGTH": 0}, environ={}))
    validate_hot_path(build_settings({"AUDIT_PURGE_BATCH_SIZE": 0}, environ={}))  # not hot: the check says it


def test_manage_py_check_warns_for_an_open_metrics_with_debug_false_and_no_environment(tmp_path):
    settings_module = tmp_path / "prod_settings.py"
    settings_module.write_text(
        "from example_project.settings import *  # noqa\n"
        "DEBUG = False\nALLOWED_HOSTS = ['*']\n"
        "OBSERVABILITY = {k: v for k, v in OBSERVABILITY.items() if k != 'ENVIRONMENT'}\n"
    )
    result = _run(
        ["manage.py", "check"], tmp_path, DJANGO_SETTINGS_MODULE="prod_settings", PYTHONPATH=f"{tmp_path}:{ROOT_DIR}"
    )
    assert "observability_app.W030" in result.stderr + result.stdout, result.stderr[-2000:]
    debug = tmp_path / "debug_settings.py"
    debug.write_text(settings_module.read_text().replace("DEBUG = False", "DEBUG = True"))
    result = _run(
        ["manage.py", "check"], tmp_path, DJANGO_SETTINGS_MODULE="debug_settings", PYTHONPATH=f"{tmp_path}:{ROOT_DIR}"
    )
    assert result.returncode == 0 and "W030" not in result.stderr + result.stdout, result.stderr[-2000:]


def test_log_level_from_the_settings_dict_is_applied_at_start_up(tmp_path):
    script = (
        "import django, logging; django.setup(); name = logging.getLevelName; "
        "print(name(logging.getLogger().level), name(logging.getLogger('django').level))"
    )
    settings_module = tmp_path / "level_settings.py"
    settings_module.write_text(
        "from example_project.settings import *  # noqa\nOBSERVABILITY = {**OBSERVABILITY, 'LOG_LEVEL': 'warning'}\n"
    )
    result = _run(
        ["-c", script], tmp_path, DJANGO_SETTINGS_MODULE="level_settings", PYTHONPATH=f"{tmp_path}:{ROOT_DIR}"
    )
    assert result.stdout.split() == ["WARNING", "WARNING"], result.stderr[-2000:]
    result = _run(["-c", script], tmp_path, OBSERVABILITY_LOG_LEVEL="ERROR")
    assert result.stdout.split() == ["ERROR", "ERROR"], result.stderr[-2000:]


ROOT_DIR = str(__import__("pathlib").Path(__file__).resolve().parent.parent)


def test_renamed_keys_keep_working_under_their_old_name_and_are_reported():
    from observability_app.conf import build_settings

    conf = build_settings({"HEALTH_CACHE_SECONDS": 7.0, "METRICS_ID_BUCKETS": 8}, environ={})
    assert conf.HEALTH_RESULT_MAX_AGE == conf.HEALTH_CACHE_SECONDS == 7.0
    assert conf.METRICS_ID_HASH_BINS == conf.METRICS_ID_BUCKETS == 8
    assert conf.unknown_keys == ()
    with override_settings(OBSERVABILITY={"HEALTH_CACHE_SECONDS": 7.0}, DEBUG=True):
        assert ids(checks.check_settings()) == ["observability_app.W005"]
    both = build_settings({"HEALTH_CACHE_SECONDS": 7.0, "HEALTH_RESULT_MAX_AGE": 2.0}, environ={})
    assert both.HEALTH_RESULT_MAX_AGE == both.HEALTH_CACHE_SECONDS == 2.0


def test_a_project_without_the_apps_json_logging_is_warned():
    import logging

    from observability_app.logging import JsonFormatter

    assert ids(checks.check_logging()) == []  # the example project: LOGGING = logging_config()
    root, access = logging.getLogger(), logging.getLogger("observability_app.access")
    saved = root.handlers, access.handlers
    root.handlers, access.handlers = [logging.StreamHandler()], []
    try:
        assert ids(checks.check_logging()) == ["observability_app.W006"]
        handler = logging.StreamHandler()
        handler.setFormatter(JsonFormatter())
        access.handlers = [handler]
        assert ids(checks.check_logging()) == []
    finally:
        root.handlers, access.handlers = saved


def test_every_environment_read_goes_through_the_schema():
    """No module but conf.py reads os.environ (grep), and conf refuses a variable it does not list."""
    from pathlib import Path

    from observability_app.conf import environment_value

    package = Path(ROOT_DIR) / "observability_app"
    readers = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "conf.py" and ("os.environ" in path.read_text() or "getenv(" in path.read_text())
    )
    # metrics/multiprocess.py, checks.py (PROMETHEUS_MULTIPROC_DIR) and tracing.py (the OTEL_ variables, resolve()'s
    # environ argument) still read it directly: the helpers that own them fold them in (issue 14 report).
    assert set(readers) <= {"metrics/multiprocess.py", "checks.py", "tracing.py"}, readers
    with pytest.raises(KeyError, match="NOT_OURS"):
        environment_value("NOT_OURS")
