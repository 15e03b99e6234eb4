"""``manage.py worker_probe live|ready``: a background worker's probe for a Kubernetes ``exec`` probe.

Reads the heartbeat the worker's consumer loop writes to ``WORKER_STATE_FILE`` and judges it as the worker's
``/health/live`` and ``/health/ready`` do (:func:`observability_app.worker.evaluate`). Prints the JSON answer.

Exit codes: 0 passes; 1 fails (no heartbeat, stale heartbeat, broker disconnected, no queue consumed, or a state
file that is missing or not a worker's); 2 bad options.
"""

from __future__ import annotations

import json
import sys

from django.core.management.base import BaseCommand, CommandError

from ... import worker
from ._options import EXIT_BAD_OPTIONS

__all__ = ["Command"]


class Command(BaseCommand):
    help = "Exit 0 when the worker whose heartbeat is in WORKER_STATE_FILE is live (or ready), else 1."

    def add_arguments(self, parser):
        parser.add_argument("probe", choices=("live", "ready"))
        parser.add_argument("--state-file", default=None, help="default: OBSERVABILITY['WORKER_STATE_FILE']")
        parser.add_argument("--max-age", default=None, help="seconds; default: WORKER_HEARTBEAT_MAX_AGE")

    def handle(self, *args, **options):
        max_age = None
        if options["max_age"] is not None:
            try:
                max_age = float(options["max_age"])
            except ValueError:
                max_age = -1.0
            if not 0 < max_age < float("inf"):
                raise CommandError(
                    f"--max-age must be a number of seconds above 0, got {options['max_age'][:40]!r}",
                    returncode=EXIT_BAD_OPTIONS,
                )
        path = options["state_file"] or worker.state_file()
        try:
            state = worker.read_state(path)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            self.stdout.write(json.dumps({"status": worker.FAIL, "reason": f"{path}: {reason}"[:500]}))
            sys.exit(1)
        status, body = worker.evaluate(state, max_age=max_age).report(options["probe"])
        self.stdout.write(json.dumps(body))
        if status != 200:
            sys.exit(1)
