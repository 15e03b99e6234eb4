"""``python -m benchmarks.admin``: the compliance browser on 1,000,000 audit events, PostgreSQL.

Measures the server time (the whole Django request: middleware, queries, templates; Django's test client in this
process, so no network) of the audit event changelist, as an auditor sees it:

=====================================  ========
first page (with its chart)            <= 150 ms
type filter                            <= 150 ms
exact correlation id search            <= 150 ms
chart of a month (drill-down)          <= 150 ms
timeline of a 1,000-event correlation  <= 150 ms
lineage of a 50-artifact chain         <= 150 ms
page 5,000 deep                        <= 300 ms
=====================================  ========

plus figures without a target (actor filter, date drill-down, a deep filtered page, the detail page, the export's
throughput). The baseline, measured in the same run on the same table, is Django's stock ``ModelAdmin`` with the same
columns, filters, date hierarchy and search fields: what a project gets without the compliance browser.

``DATABASE_URL`` names the PostgreSQL database (default ``postgres://postgres@127.0.0.1:5432/observability_bench``);
it is created when missing, migrated, and filled once with ``record_many`` (``COPY``); later runs reuse the rows.
After loading, ``VACUUM ANALYZE`` does what autovacuum does to a table after a bulk insert, so that every run measures
the steady state. Options: ``--events N`` (default 1,000,000), ``--runs N`` (timed runs per figure, default 9),
``--baseline-runs N`` (default 3; 0 skips the baseline).

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import types
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/observability_bench"
TARGETS_MS = {
    "first page": 150,
    "type filter": 150,
    "correlation id search": 150,
    "chart: a month": 150,
    "timeline (1,000 events)": 150,
    "lineage (50 artifacts)": 150,
    "page 5,000 deep": 300,
}
CHANGELIST = "/admin/observability_app/auditevent/"
TIMELINE_CORRELATION = "bench-timeline-1000"
CHAIN = [f"bench-chain/model-{n:02d}@1" for n in range(50)]
BASELINE = "/baseline-admin/observability_app/auditevent/"
BATCH = 20_000
#: Event types and their share of the generated trail (the rest of the registry appears a few times each).
MIX = [
    ("ARTIFACT_ACCESSED", 0.55),
    ("ARTIFACT_CREATED", 0.12),
    ("SAFETY_DECISION_RECORDED", 0.10),
    ("AUTH_LOGIN_SUCCEEDED", 0.09),
    ("AUTH_LOGOUT", 0.05),
    ("PROVENANCE_CHAIN_VERIFIED", 0.03),
    ("AUTH_LOGIN_FAILED", 0.02),
    ("ARTIFACT_DELETED", 0.02),
    ("ADMIN_ACTION", 0.01),
    ("CONFIG_CHANGED", 0.005),
    ("INTEGRITY_CHECK_FAILED", 0.003),
    ("SAFETY_DECISION_OVERTURNED", 0.002),
]
RARE_TYPE = "INTEGRITY_CHECK_FAILED"


def ensure_database(url: str) -> None:
    """Create the database named by ``url`` when it does not exist (connecting to the ``postgres`` database)."""
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            print(f"created database {name}")


def _payload(rng: random.Random, event_type: str, artifact: str, user: str) -> dict:
    version = f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.0"
    digest = "sha256:" + f"{rng.getrandbits(256):064x}"
    if event_type == "ARTIFACT_CREATED":
        return {
            "artifact_id": artifact,
            "version": version,
            "client_digest": digest,
            "stored_digest": digest,
            "size_bytes": rng.randint(1_000, 5_000_000_000),
            "bucket_id": artifact.split("/")[0],
        }
    if event_type == "ARTIFACT_ACCESSED":
        return {"artifact_id": artifact, "version": version, "reader": user, "purpose": rng.choice(["eval", "serving"])}
    if event_type == "SAFETY_DECISION_RECORDED":
        return {
            "artifact_id": artifact,
            "decision": rng.choice(["approved", "approved", "approved", "rejected", "quarantined"]),
            "scanner": "picklescan",
            "scanner_version": "0.0.20",
            "confidence": round(rng.random(), 3),
        }
    if event_type == "PROVENANCE_CHAIN_VERIFIED":
        return {"artifact_id": artifact, "upstream_refs": [f"datasets/d{rng.randint(1, 500)}@1"], "result": "verified"}
    if event_type == "ARTIFACT_DELETED":
        return {"artifact_id": artifact, "version": version, "reason": "superseded"}
    if event_type == "INTEGRITY_CHECK_FAILED":
        return {"artifact_id": artifact, "expected_digest": digest, "actual_digest": digest[::-1], "stage": "upload"}
    if event_type == "SAFETY_DECISION_OVERTURNED":
        return {
            "artifact_id": artifact,
            "previous_decision": "rejected",
            "new_decision": "approved",
            "overturn_reason": "false positive confirmed by review",
        }
    if event_type == "ADMIN_ACTION":
        return {"object_type": "bucket.artifact", "object_id": str(rng.randint(1, 50_000)), "action": "change",
                "change_message": "[]"}  # fmt: skip
    if event_type == "CONFIG_CHANGED":
        return {"key": "SCAN_THRESHOLD", "old_value": 0.8, "new_value": 0.9}
    return {"username": user}


def generate(count: int, start_index: int, total: int, seed: int = 7):
    """``count`` events shaped like a busy artifact service's trail over three years, oldest first.

    About 5 events per correlation id, 2,000 actors (a few very busy), 50,000 artifacts; 1% back-dated by up to a
    year (late imports), so ids and times are not in perfect step.
    """
    rng = random.Random(seed + start_index)
    names = [name for name, _ in MIX]
    weights = [share for _, share in MIX]
    begin = datetime(2023, 1, 1, tzinfo=UTC)
    span = timedelta(days=3 * 365).total_seconds()
    users = [f"user-{n:04d}" for n in range(2000)]
    for index in range(start_index, start_index + count):
        event_type = rng.choices(names, weights)[0]
        occurred = begin + timedelta(seconds=span * index / total + rng.random())
        if rng.random() < 0.01:
            occurred -= timedelta(days=rng.randint(1, 365))
        user = users[min(int(rng.paretovariate(1.2)) - 1, len(users) - 1)] if rng.random() < 0.5 else rng.choice(users)
        artifact = f"bucket-{rng.randint(1, 40)}/model-{rng.randint(1, 50_000)}"
        yield {
            "event_type": event_type,
            "payload": _payload(rng, event_type, artifact, user),
            "actor": user,
            "source": "api",
            "occurred_at": occurred,
            "correlation_id": f"bench-{index // 5:08d}",
            "request_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "client_ip": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
            "user_agent": "bench-client/1.0",
            "route": "api/v1/buckets/<bucket>/artifacts/<name>/<version>",
        }


def load(target: int) -> None:
    from django.db import connection, transaction

    from observability_app.audit import record_many
    from observability_app.audit.models import AuditEvent

    have = AuditEvent.objects.count()
    if have >= target:
        print(f"table holds {have:,} events (target {target:,}): reusing them")
        return
    print(f"loading {target - have:,} events (table holds {have:,}) ...", flush=True)
    started = time.perf_counter()
    done = have
    while done < target:
        batch = min(BATCH, target - done)
        with transaction.atomic():
            record_many(generate(batch, done, target))
        done += batch
        if done % 200_000 == 0 or done == target:
            rate = (done - have) / (time.perf_counter() - started)
            print(f"  {done:,} events, {rate:,.0f} events/s", flush=True)
    print("VACUUM ANALYZE (what autovacuum does after a bulk insert) ...", flush=True)
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM ANALYZE {AuditEvent._meta.db_table}")


def load_investigations() -> None:
    """Once per database: a correlation id with 1,000 events and a 50-artifact provenance chain, among the rest."""
    from django.db import transaction

    from observability_app.audit import record_many
    from observability_app.audit.models import AuditEvent

    if AuditEvent.objects.filter(correlation_id=TIMELINE_CORRELATION).exists():
        return
    begin = datetime(2025, 6, 1, tzinfo=UTC)

    def events():
        for n in range(1000):
            yield {
                "event_type": "ARTIFACT_ACCESSED",
                "payload": {"artifact_id": "bucket-1/model-7", "version": "1", "reader": f"job-{n % 9}",
                            "purpose": "eval"},
                "occurred_at": begin + timedelta(milliseconds=37 * n),
                "correlation_id": TIMELINE_CORRELATION,
                "source": "job" if n % 3 else "worker",
                "actor": f"user-{n % 20:04d}",
            }  # fmt: skip
        for n, name in enumerate(CHAIN):
            when = begin + timedelta(hours=n)
            upstream = CHAIN[n + 1 : n + 2]
            yield {"event_type": "ARTIFACT_CREATED", "occurred_at": when, "payload": {
                "artifact_id": name, "version": "1", "client_digest": "sha256:00", "stored_digest": "sha256:00",
                "size_bytes": 1, "bucket_id": "bench-chain"}}  # fmt: skip
            yield {"event_type": "PROVENANCE_CHAIN_VERIFIED", "occurred_at": when, "payload": {
                "artifact_id": name, "upstream_refs": upstream, "result": "verified"}}  # fmt: skip
            yield {"event_type": "SAFETY_DECISION_RECORDED", "occurred_at": when, "payload": {
                "artifact_id": name, "decision": "approved", "scanner": "s", "scanner_version": "1",
                "confidence": 0.9}}  # fmt: skip
        for n in range(200):
            payload = {"artifact_id": CHAIN[0], "version": "1", "reader": f"reader-{n % 7}", "purpose": "serving"}
            yield {"event_type": "ARTIFACT_ACCESSED", "occurred_at": begin + timedelta(minutes=n), "payload": payload}

    with transaction.atomic():
        record_many(events())
    print("loaded a 1,000-event correlation and a 50-artifact chain")


def baseline_urls():
    """A URLconf with the app's admin at /admin/ and Django's stock ModelAdmin of the same table at /baseline-admin/."""
    from django.contrib import admin
    from django.urls import path

    from observability_app.audit.models import AuditEvent

    class StockAuditEventAdmin(admin.ModelAdmin):
        list_display = ("occurred_at", "event_type", "subject", "actor", "outcome", "correlation_id")
        list_filter = ("event_type", "actor")
        date_hierarchy = "occurred_at"
        search_fields = ("correlation_id", "request_id", "subject", "actor")
        change_list_template = "admin/change_list.html"  # not the compliance browser's (found by app/model name)

    site = admin.AdminSite(name="baseline_admin")
    site.register(AuditEvent, StockAuditEventAdmin)
    module = types.ModuleType("benchmarks_admin_urls")
    module.urlpatterns = [path("admin/", admin.site.urls), path("baseline-admin/", site.urls)]
    sys.modules[module.__name__] = module
    return module.__name__


def timed(client, url: str, runs: int, warmup: int = 1) -> tuple[list[float], int]:
    status = 0
    for _ in range(warmup):
        response = client.get(url)
        status = response.status_code
        if response.streaming:
            for _chunk in response.streaming_content:
                pass
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        if response.streaming:
            for _chunk in response.streaming_content:
                pass
        else:
            response.content  # noqa: B018
        times.append((time.perf_counter() - started) * 1000)
        status = response.status_code
    return times, status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.admin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--baseline-runs", type=int, default=3)
    args = parser.parse_args(argv)

    url = os.environ.setdefault("DATABASE_URL", DEFAULT_URL)
    if not url.startswith("postgres"):
        print(f"DATABASE_URL must name PostgreSQL, got {url!r}", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    ensure_database(url)

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    from observability_app.admin.permissions import ensure_auditor_group
    from observability_app.conf import settings as obs_settings

    call_command("migrate", verbosity=0)
    load(args.events)
    load_investigations()
    settings.ROOT_URLCONF = baseline_urls()
    settings.ALLOWED_HOSTS = ["testserver"]
    settings.OBSERVABILITY = {**settings.OBSERVABILITY, "ACCESS_LOG_ENABLED": False}
    obs_settings.reload()  # assigning to django.conf.settings sends no setting_changed: the app re-reads it here
    User = get_user_model()
    auditor, _ = User.objects.get_or_create(username="bench-auditor", defaults={"is_staff": True})
    ensure_auditor_group(users=[auditor.username])
    client = Client()
    client.force_login(auditor)

    from observability_app.audit.models import AuditEvent

    middle = AuditEvent.objects.filter(pk__gte=args.events // 2).order_by("pk").first()
    correlation = middle.correlation_id
    actor = "user-0000"  # the busiest actor
    timeline_url = f"{CHANGELIST}timeline/?{urlencode({'correlation_id': TIMELINE_CORRELATION})}"
    lineage_url = f"{CHANGELIST}lineage/?{urlencode({'artifact': CHAIN[0]})}"
    pages = {  # pages other than the changelist, and the stock admin's nearest equivalent
        "timeline (1,000 events)": (timeline_url, urlencode({"q": TIMELINE_CORRELATION})),
        "lineage (50 artifacts)": (lineage_url, urlencode({"q": CHAIN[0]})),
    }
    month = {"occurred_at__year": 2024, "occurred_at__month": 6}
    scenarios = [
        ("first page", ""),
        ("type filter", urlencode({"event_type": "ARTIFACT_CREATED"})),
        ("correlation id search", urlencode({"q": correlation})),
        ("page 5,000 deep", urlencode({"p": 5000})),
        ("rare type filter", urlencode({"event_type": RARE_TYPE})),
        ("request id search", urlencode({"q": middle.request_id})),
        ("subject search", urlencode({"q": f"subject:{middle.subject}"})),
        ("actor filter (busiest actor)", urlencode({"actor": actor})),
        ("correlation link", urlencode({"correlation_id": correlation})),
        ("date drill-down: a year", urlencode({"occurred_at__year": 2024})),
        ("date drill-down: a month", urlencode({"occurred_at__year": 2024, "occurred_at__month": 6})),
        ("type filter, page 5,000 deep", urlencode({"event_type": "ARTIFACT_ACCESSED", "p": 5000})),
        ("actor filter, page 1,000 deep", urlencode({"actor": actor, "p": 1000})),
        ("page 10,000 deep (last)", urlencode({"p": 10000})),
        ("chart: a month", urlencode({"occurred_at__year": 2024, "occurred_at__month": 6})),
        ("chart: a year", urlencode({"occurred_at__year": 2024})),
        ("chart: a month, type filter", urlencode({**month, "event_type": "ARTIFACT_CREATED"})),
        ("timeline (1,000 events)", ""),
        ("lineage (50 artifacts)", ""),
    ]
    total = AuditEvent.objects.count()
    print(f"\n{total:,} events, {args.runs} runs each")
    print(f"{'':32} {'median':>9} {'max':>9} {'target':>8} {'stock admin':>12} {'ratio':>7}")
    failed = []
    for name, query in scenarios:
        url = pages[name][0] if name in pages else (f"{CHANGELIST}?{query}" if query else CHANGELIST)
        if name in pages:
            query = pages[name][1]
        times, status = timed(client, url, args.runs)
        if status != 200:
            print(f"{name}: HTTP {status}", file=sys.stderr)
            failed.append(name)
            continue
        median = statistics.median(times)
        target = TARGETS_MS.get(name)
        base = ""
        ratio = ""
        if args.baseline_runs and name in TARGETS_MS:
            base_times, base_status = timed(client, f"{BASELINE}?{query}" if query else BASELINE, args.baseline_runs, 0)
            base_median = statistics.median(base_times)
            base = f"{base_median:9.0f} ms" if base_status == 200 else f"HTTP {base_status}"
            ratio = f"{base_median / median:6.1f}x"
        verdict = ""
        if target is not None:
            verdict = f"{target:5d} ms" + (" MISSED" if median > target else "")
            if median > target:
                failed.append(name)
        print(f"{name:32} {median:6.1f} ms {max(times):6.1f} ms {verdict:>8} {base:>12} {ratio:>7}")

    event = AuditEvent.objects.get(pk=middle.pk)
    times, _ = timed(client, f"{CHANGELIST}{event.pk}/change/", args.runs)
    print(f"{'detail page':32} {statistics.median(times):6.1f} ms {max(times):6.1f} ms")
    export_url = f"/admin/observability_app/auditevent/export/jsonl/?{urlencode({'event_type': RARE_TYPE})}"
    rows = AuditEvent.objects.filter(event_type=RARE_TYPE).count()
    times, _ = timed(client, export_url, 1, 0)
    rate = rows / times[0] * 1000
    print(f"{'export (JSON Lines), rare type':32} {times[0]:6.1f} ms for {rows:,} events ({rate:,.0f} events/s)")
    if failed:
        print(f"\nMISSED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
