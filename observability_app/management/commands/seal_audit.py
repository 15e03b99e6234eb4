"""``manage.py seal_audit``: seal the events written since the last seal. Policy:
:func:`observability_app.audit.integrity.seal`.

Run it from cron every minute, or as a long-running process with ``--every SECONDS`` (a systemd service, a
Kubernetes deployment of one replica): what is not sealed yet is the only part of the trail a database attacker can
change unseen, so this bounds that window. In ``--every`` mode a database error is logged and retried at the next
tick; SIGTERM or SIGINT stop it after the current seal.

Exit codes: 0 done (``--every``: stopped by a signal); 1 the chain lost its latest checkpoint (``UnanchoredChain``:
sealing on would sign a tampered trail; run ``verify_audit``); 2 bad options.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, close_old_connections, connections

from ...audit.integrity import UnanchoredChain, seal
from ._options import EXIT_BAD_OPTIONS, database_vendor

__all__ = ["EXIT_UNANCHORED", "Command"]


logger = logging.getLogger("observability_app.audit.integrity")
EXIT_UNANCHORED = 1


class Command(BaseCommand):
    help = "Write seals (chained, keyed digests) over the audit events not sealed yet; --every to keep doing so."

    def add_arguments(self, parser):
        parser.add_argument("--database", default="default")
        parser.add_argument("--every", type=float, metavar="SECONDS", help="keep running, sealing every SECONDS")

    def handle(self, *args, **options):
        using, every = options["database"], options["every"]
        database_vendor(using)
        if every is not None and not 0.1 <= every <= 86_400:
            raise CommandError(f"--every must be 0.1 to 86400 seconds, got {every}", returncode=EXIT_BAD_OPTIONS)
        if every is None:
            self._seal_once(using)
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.stdout.write(f"sealing every {every:g} s; SIGTERM or SIGINT stops")
        while not stop.is_set():
            close_old_connections()
            try:
                self._seal_once(using, quiet_when_idle=True)
            except DatabaseError as exc:  # an outage: say so and try again at the next tick
                logger.error("seal_audit --every: sealing failed: %s", str(exc).strip()[:300])
                connections[using].close()
            stop.wait(every)
        self.stdout.write("stopped")

    def _seal_once(self, using: str, *, quiet_when_idle: bool = False) -> None:
        try:
            result = seal(using=using)
        except UnanchoredChain as exc:
            self.stderr.write(f"refusing to seal: {exc}. Run verify_audit.")
            sys.exit(EXIT_UNANCHORED)
        for new in result.seals:
            self.stdout.write(f"seal {new.pk}: events {new.first_id}..{new.last_id} ({new.event_count}) {new.digest}")
        if result.seals or not quiet_when_idle:
            self.stdout.write(self.style.SUCCESS(f"sealed {result.events} event(s) in {len(result.seals)} seal(s)"))
        self.stdout.flush()
