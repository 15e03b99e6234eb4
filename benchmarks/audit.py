"""Audit trail write cost: ``record()`` against a plain ORM insert of an equal row, and ``record_many()`` throughput.

Run: ``python -m benchmarks.audit`` (``--events N``, ``--bulk N``, ``--rounds N``, ``--postgres URL``).

Both databases in one run: a temporary SQLite file and the PostgreSQL named by ``--postgres`` (default
``BENCH_POSTGRES_URL`` or ``postgres://postgres@127.0.0.1:5432/obs_bench``; the database is created when missing).
The baseline is ``Model.objects.create()`` into a table with the same columns and indexes as the events table,
with the same values (payload and digest precomputed), inside one transaction, like ``record()``. Rounds alternate
between the two so that drift on a shared machine hits both alike; the median round is reported.

Targets (issue 2): record() at most 1.25x the plain insert; record_many() at least 30,000 events/s on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime

PAYLOAD = {
    "artifact_id": "models/sentiment-classifier@1.4.2",
    "version": "1.4.2",
    "client_digest": "sha256:" + "ab" * 32,
    "stored_digest": "sha256:" + "ab" * 32,
    "size_bytes": 48213,
    "bucket_id": "models",
}
RECORD_TARGET = 1.25
BULK_TARGET = 30_000


def configure(sqlite_path: str, postgres_url: str | None) -> list[str]:
    import dj_database_url
    import django
    from django.conf import settings

    databases = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": sqlite_path}}
    aliases = ["default"]
    if postgres_url:
        databases["postgres"] = dj_database_url.parse(postgres_url)
        aliases.append("postgres")
    settings.configure(
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "observability_app"],
        DATABASES=databases,
        USE_TZ=True,
        OBSERVABILITY={"AUDIT_SIGNING_KEY": "bench-key", "AUDIT_CAPTURE_ADMIN_ACTIONS": False},
        LOGGING_CONFIG=None,
    )
    django.setup()
    return aliases


def ensure_postgres_database(url: str) -> bool:
    """Create the benchmark database when missing; False when PostgreSQL cannot be reached."""
    import dj_database_url
    import psycopg

    params = dj_database_url.parse(url)
    try:
        with psycopg.connect(
            host=params["HOST"] or "127.0.0.1",
            port=params["PORT"] or 5432,
            user=params["USER"] or "postgres",
            dbname="postgres",
            autocommit=True,
            connect_timeout=3,
        ) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [params["NAME"]]).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{params["NAME"]}"')
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL not reachable ({exc}); SQLite only", file=sys.stderr)
        return False
    return True


def plain_model():
    """A model with the events table's columns and indexes, written with plain ``objects.create()``."""
    from django.db import models

    from observability_app.audit.models import AuditEvent

    attrs = {"__module__": __name__}
    for field in AuditEvent._meta.concrete_fields:
        clone = field.clone()
        if field.name == "event_id":
            clone = models.UUIDField(unique=True)
        attrs[field.name] = clone
    attrs["Meta"] = type(
        "Meta",
        (),
        {
            "app_label": "observability_app",
            "db_table": "bench_plain_event",
            "indexes": [
                models.Index(fields=index.fields, name=index.name.replace("obs_audit", "bench_plain"))
                for index in AuditEvent._meta.indexes
            ],
        },
    )
    return type("BenchPlainEvent", (models.Model,), attrs)


def prepare(alias: str, plain) -> None:
    from django.core.management import call_command
    from django.db import connections

    call_command("migrate", database=alias, verbosity=0)
    connection = connections[alias]
    with connection.schema_editor() as editor:
        if plain._meta.db_table in connection.introspection.table_names():
            editor.delete_model(plain)
        editor.create_model(plain)


def time_record(alias: str, n: int) -> float:
    from django.db import transaction

    from observability_app import audit

    start = time.perf_counter()
    with transaction.atomic(using=alias):
        for _ in range(n):
            audit.record("ARTIFACT_CREATED", PAYLOAD, using=alias)
    return (time.perf_counter() - start) / n


def time_plain(alias: str, n: int, plain) -> float:
    from django.db import transaction

    now = datetime.now(UTC)
    digest = "f" * 64
    start = time.perf_counter()
    with transaction.atomic(using=alias):
        for _ in range(n):
            plain.objects.using(alias).create(
                event_id=uuid.uuid4(),
                event_type="ARTIFACT_CREATED",
                occurred_at=now,
                subject=PAYLOAD["artifact_id"],
                actor="",
                outcome="success",
                source="command",
                service="artifact-service",
                environment="development",
                payload=PAYLOAD,
                digest=digest,
            )
    return (time.perf_counter() - start) / n


def time_bulk(alias: str, n: int) -> float:
    from django.db import transaction

    from observability_app import audit

    events = [("ARTIFACT_CREATED", PAYLOAD)] * n
    start = time.perf_counter()
    with transaction.atomic(using=alias):
        audit.record_many(events, using=alias)
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000, help="events per round for record() and the baseline")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--bulk", type=int, default=50_000, help="events in the record_many() run")
    parser.add_argument(
        "--postgres", default=os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/obs_bench")
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="obs-bench-")
    postgres = args.postgres if args.postgres and ensure_postgres_database(args.postgres) else None
    aliases = configure(os.path.join(tmp, "bench.sqlite3"), postgres)
    plain = plain_model()
    missed = []
    print(f"audit benchmark: {args.rounds} rounds x {args.events} events, bulk {args.bulk}")
    print(f"{'database':<11}{'plain insert':>14}{'record()':>12}{'ratio':>8}{'target':>8}{'bulk ev/s':>12}")
    for alias in aliases:
        prepare(alias, plain)
        time_record(alias, 200)  # warm up connections, caches, prepared statements
        time_plain(alias, 200, plain)
        plains, records = [], []
        for _ in range(args.rounds):
            plains.append(time_plain(alias, args.events, plain))
            records.append(time_record(alias, args.events))
        plain_us = statistics.median(plains) * 1e6
        record_us = statistics.median(records) * 1e6
        ratio = record_us / plain_us
        bulk = time_bulk(alias, args.bulk)
        vendor = "postgresql" if alias == "postgres" else "sqlite"
        print(f"{vendor:<11}{plain_us:>11.1f} us{record_us:>9.1f} us{ratio:>8.2f}{RECORD_TARGET:>8.2f}{bulk:>12,.0f}")
        if ratio > RECORD_TARGET:
            missed.append(f"{vendor}: record() {ratio:.2f}x the plain insert (target <= {RECORD_TARGET})")
        if vendor == "postgresql" and bulk < BULK_TARGET:
            missed.append(f"postgresql: record_many() {bulk:,.0f} events/s (target >= {BULK_TARGET:,})")
    print("targets: " + ("all met" if not missed else "MISSED: " + "; ".join(missed)))
    return 1 if (missed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
