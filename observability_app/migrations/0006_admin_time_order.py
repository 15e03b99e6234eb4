"""An index for the compliance browser's time order (observability_app.admin.events).

The changelist lists events newest first by ``occurred_at`` (then by id, for events of the same instant), not by id:
events recorded late (back-dated imports) must not make the time column jump between years. ``ORDER BY occurred_at
DESC, id DESC LIMIT n OFFSET k`` is served by walking (occurred_at, id) backwards, and a deep page's ids come from the
index alone. ``event_type`` rides along as a third column so that the changelist's chart (events per day by type,
``GROUP BY day, event_type`` over a time range) is an index-only scan as well.

Built with CREATE INDEX CONCURRENTLY on PostgreSQL (as in 0003), so that writers are not blocked while a large table
is indexed. A failed concurrent build leaves an INVALID index: ``DROP INDEX CONCURRENTLY obs_audit_time_id_type`` and
migrate again.

Follows 0005 (the audit integrity tables made append-only); the index itself is independent of that work.
"""

from importlib import import_module

from django.db import migrations, models

# The concurrent AddIndex of 0003 (a module name that starts with a digit cannot be imported with ``import``).
_admin_indexes = import_module("observability_app.migrations.0003_admin_indexes")
AddIndexConcurrentlyOnPostgres = _admin_indexes.AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("observability_app", "0005_append_only_integrity"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="auditevent",
            index=models.Index(fields=["occurred_at", "id", "event_type"], name="obs_audit_time_id_type"),
        ),
    ]
