"""Elastic Common Schema log lines: ``OBSERVABILITY["LOG_FORMAT"] = "ecs"`` (env ``OBSERVABILITY_LOG_FORMAT``).

:func:`to_ecs` turns a line of the default field set (docs/logging.md) into ECS field names, shaped as the
``ecs-logging`` libraries write them: ``@timestamp``, ``log.level``, ``message`` and ``ecs.version`` first and
dotted, every other field nested (``{"http": {"request": {"method": "PUT"}}}``). The mapping:

==================  ==============================  ==================  ==================================
default             ECS                             default             ECS
==================  ==============================  ==================  ==================================
``timestamp``       ``@timestamp``                  ``method``          ``http.request.method``
``level``           ``log.level`` (lower case)      ``path``            ``url.path``
``logger``          ``log.logger``                  ``status_code``     ``http.response.status_code``
``service``         ``service.name``                ``bytes``           ``http.response.body.bytes``
``environment``     ``service.environment``         ``user_agent``      ``user_agent.original``
``request_id``      ``http.request.id``             ``duration_ms``     ``event.duration`` (nanoseconds)
``trace_id``        ``trace.id``                    ``outcome``         ``event.outcome`` (success, failure,
``span_id``         ``span.id``                                         unknown) and ``labels.outcome``
``user_id``         ``user.id``                     ``error.type``      ``error.type``
``ip``              ``client.ip``                   ``error.message``   ``error.message``
                                                    ``error.stack``     ``error.stack_trace``
==================  ==============================  ==================  ==================================

``correlation_id``, ``route``, ``source``, ``org_id``, ``project_id`` and ``job`` have no ECS field: they go to
``labels`` (ECS's keyword pairs). Any other field a line carries (a logger's ``extra``, debug logging's headers) goes
under the custom namespace ``observability``, which ECS does not define. Fields that are null are left out.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CUSTOM", "ECS_VERSION", "FIELD_MAP", "LABELS", "OUTCOMES", "to_ecs"]


#: The ECS release whose field definitions the lines follow (tests/fixtures/ecs_fields.json holds them).
ECS_VERSION = "8.11.0"

#: Default field -> dotted ECS field.
FIELD_MAP: dict[str, str] = {
    "logger": "log.logger",
    "service": "service.name",
    "environment": "service.environment",
    "request_id": "http.request.id",
    "trace_id": "trace.id",
    "span_id": "span.id",
    "user_id": "user.id",
    "ip": "client.ip",
    "method": "http.request.method",
    "path": "url.path",
    "status_code": "http.response.status_code",
    "bytes": "http.response.body.bytes",
    "user_agent": "user_agent.original",
    "error.type": "error.type",
    "error.message": "error.message",
    "error.stack": "error.stack_trace",
}
#: Default fields without an ECS field: ECS's ``labels`` (keyword values).
LABELS = ("correlation_id", "route", "source", "org_id", "project_id", "job", "outcome")
#: Our outcome -> ECS ``event.outcome`` (its allowed values: success, failure, unknown).
OUTCOMES = {"success": "success", "error": "failure", "retry": "unknown"}
#: The custom namespace for everything else a line carries.
CUSTOM = "observability"

_HEAD = ("timestamp", "level", "message")


def to_ecs(data: dict[str, Any]) -> dict[str, Any]:
    """The ECS object of a default-format line ``data`` (a new dict; ``data`` is left as it is)."""
    line: dict[str, Any] = {
        "@timestamp": data.get("timestamp"),
        "log.level": (data.get("level") or "").lower() or None,
        "message": data.get("message") or "",
        "ecs.version": ECS_VERSION,
    }
    nested: dict[str, Any] = {}
    labels: dict[str, str] = {}
    custom: dict[str, Any] = {}
    for key, value in data.items():
        if value is None or key in _HEAD:
            continue
        target = FIELD_MAP.get(key)
        if target is not None:
            _put(nested, target, value)
        elif key in LABELS:
            labels[key] = str(value)
            if key == "outcome":
                _put(nested, "event.outcome", OUTCOMES.get(str(value), "unknown"))
        elif key == "duration_ms":
            if isinstance(value, int | float) and not isinstance(value, bool):
                _put(nested, "event.duration", round(value * 1_000_000))
        else:
            custom[key] = value
    if labels:
        nested["labels"] = labels
    if custom:
        nested[CUSTOM] = custom
    line.update(nested)
    return line


def _put(target: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value
