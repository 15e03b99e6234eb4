"""Tasks that only the tests' workers load (``celery worker -I tests.celery_tasks``): a chain and a nested publish.

Like the example's tasks, nothing here knows about observability: the ids reach every run through the integration.
"""

from __future__ import annotations

import logging

from example_project.celery import app

logger = logging.getLogger(__name__)


@app.task(name="tests.add_one")
def add_one(value: int) -> int:
    logger.info("adding one to %s", value)
    return value + 1


@app.task(name="tests.double")
def double(value: int) -> int:
    return value * 2


@app.task(name="tests.publish_nested")
def publish_nested(value: int) -> int:
    """Publishes another task from inside its run (what a fan-out does)."""
    double.apply_async((value,), queue="celery")
    return value
