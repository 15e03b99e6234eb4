"""The stored audit trail: events, and the rows that are evidence about them (seals, purge records, verification
runs, legal holds and their releases).

Every one of these tables is append-only at three levels: the models refuse ``save()`` of an existing row and
``delete()``; their querysets refuse ``update()`` and ``delete()``; database triggers (migrations 0002 and 0005)
refuse raw SQL ``UPDATE``, ``DELETE`` and (PostgreSQL) ``TRUNCATE``. The one opening is the retention purge's delete
of expired events (:mod:`observability_app.audit.db`). See docs/audit-integrity.md for the threat model.

Indexes serve the queries that matter: by type and time (filters, purge), by time (date drill-down), and exact
look-ups by correlation id, request id, subject and actor (search, "all events of this correlation id").
"""

from __future__ import annotations

from typing import Any

from django.db import models, router, transaction

from .exceptions import AppendOnlyViolation
from .locks import take_writers_lock

__all__ = [
    "AppendOnlyQuerySet",
    "AuditEvent",
    "AuditEventQuerySet",
    "AuditPurgeRecord",
    "AuditSeal",
    "AuditVerification",
    "LegalHold",
    "LegalHoldQuerySet",
    "LegalHoldRelease",
]


class AppendOnlyQuerySet(models.QuerySet):
    """A queryset that refuses every bulk change: rows of these tables are written once and never edited."""

    def _refuse(self, what: str) -> AppendOnlyViolation:
        table = self.model._meta.verbose_name_plural
        return AppendOnlyViolation(f"{what} on {table} refused: the table is append-only")

    def update(self, **kwargs: Any) -> int:
        raise self._refuse("QuerySet.update()")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise self._refuse("QuerySet.delete()")

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> int:
        raise self._refuse("bulk_update()")

    def update_or_create(self, *args: Any, **kwargs: Any) -> Any:
        raise self._refuse("update_or_create()")

    def _raw_delete(self, using: str) -> int:
        raise self._refuse("raw delete")


class AuditEventQuerySet(AppendOnlyQuerySet):
    def correlated(self, correlation_id: str) -> AuditEventQuerySet:
        """All events of one correlation id, oldest first."""
        return self.filter(correlation_id=correlation_id).order_by("occurred_at", "id")


class AuditEvent(models.Model):
    """One audit event. Create through :func:`observability_app.audit.record`, never by hand."""

    id = models.BigAutoField(primary_key=True)
    event_id = models.UUIDField(unique=True, editable=False)
    event_type = models.CharField(max_length=64)
    occurred_at = models.DateTimeField()
    subject = models.CharField(max_length=255, blank=True, default="")
    actor = models.CharField(max_length=255, blank=True, default="")
    outcome = models.CharField(max_length=16, blank=True, default="success")
    source = models.CharField(max_length=16, blank=True, default="")
    correlation_id = models.CharField(max_length=128, blank=True, default="")
    request_id = models.CharField(max_length=128, blank=True, default="")
    trace_id = models.CharField(max_length=32, blank=True, default="")
    span_id = models.CharField(max_length=16, blank=True, default="")
    client_ip = models.CharField(max_length=45, blank=True, default="")
    user_agent = models.CharField(max_length=512, blank=True, default="")
    route = models.CharField(max_length=255, blank=True, default="")
    service = models.CharField(max_length=64, blank=True, default="")
    environment = models.CharField(max_length=64, blank=True, default="")
    payload = models.JSONField(default=dict)
    digest = models.CharField(max_length=64, editable=False)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        app_label = "observability_app"
        db_table = "observability_audit_event"
        ordering = ("-id",)
        verbose_name = "audit event"
        verbose_name_plural = "audit events"
        default_permissions = ("view",)
        indexes = [
            models.Index(fields=["event_type", "occurred_at"], name="obs_audit_type_time"),
            models.Index(fields=["occurred_at"], name="obs_audit_time"),
            models.Index(fields=["correlation_id"], name="obs_audit_correlation"),
            models.Index(fields=["request_id"], name="obs_audit_request"),
            models.Index(fields=["subject"], name="obs_audit_subject"),
            # Compliance browser (migration 0003): a filter ordered newest first walks one index, to any depth.
            models.Index(fields=["event_type", "id"], name="obs_audit_type_id"),
            models.Index(fields=["actor", "id"], name="obs_audit_actor_id"),
            # Compliance browser's time order and chart (migration 0006): newest first by time, per day by type.
            models.Index(fields=["occurred_at", "id", "event_type"], name="obs_audit_time_id_type"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.subject} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyViolation("save() of a stored audit event refused")
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        with transaction.atomic(using=using):  # the writers' lock lives as long as the transaction (locks.py)
            take_writers_lock(using)
            super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AppendOnlyViolation("delete() of an audit event refused")


class _AppendOnlyModel(models.Model):
    """Rows that, once written, are evidence: the ORM refuses to change or delete them."""

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyViolation(f"save() of a stored {type(self).__name__} refused")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise AppendOnlyViolation(f"delete() of a {type(self).__name__} refused")


class LegalHoldQuerySet(AppendOnlyQuerySet):
    def active(self) -> LegalHoldQuerySet:
        """The holds in force: placed and not released."""
        return self.filter(release__isnull=True)


class AuditSeal(_AppendOnlyModel):
    """A digest over the events written since the previous seal, chained to it.

    ``leaves`` holds, for every event it covers, its id (8 bytes) and stored digest (32 bytes), sorted by id, so
    that verification can name the event that was changed, removed or inserted. Events that committed after an
    earlier seal had read their id range ("late" events) are carried by the next seal, below its ``first_id``.
    ``digest`` is HMAC-SHA256 with the signing key (SHA-256 without one) over the previous seal's digest, the
    range, the count, the SHA-256 of ``leaves`` and (version 2) ``watch``.

    ``watch`` (PostgreSQL) holds the transactions in progress when the seal read its range: only they can still
    commit an event inside it, so only they make an event found there later "late" rather than "inserted".
    """

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField()
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()
    event_count = models.IntegerField()
    late_count = models.IntegerField(default=0)
    leaves = models.BinaryField()
    previous_digest = models.CharField(max_length=64, blank=True, default="")
    digest = models.CharField(max_length=64)
    keyed = models.BooleanField(default=False)
    watch = models.JSONField(default=list, blank=True)
    version = models.PositiveSmallIntegerField(default=1)

    class Meta:
        app_label = "observability_app"
        db_table = "observability_audit_seal"
        ordering = ("id",)
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"seal {self.pk}: events {self.first_id}..{self.last_id} ({self.event_count})"


class AuditPurgeRecord(_AppendOnlyModel):
    """What one purge batch removed from one seal's events, so verification can tell a purge from a deletion.

    ``removed`` holds the ids (8 bytes each, sorted); ``digest`` is HMAC-SHA256 (SHA-256 without a key) over the
    seal's digest, the run id and ``removed`` and (version 2) the batch's ``event_type``, the distinct ``subjects``
    it removed and ``created_at`` (the database's clock): a database-only attacker cannot forge one to hide a
    deletion, and verification can tell whether a legal hold in force at that time covered what went.
    """

    id = models.BigAutoField(primary_key=True)
    run_id = models.CharField(max_length=64)
    seal = models.ForeignKey(AuditSeal, on_delete=models.PROTECT, related_name="purges")
    created_at = models.DateTimeField()
    removed = models.BinaryField()
    removed_count = models.IntegerField()
    digest = models.CharField(max_length=64)
    event_type = models.CharField(max_length=64, blank=True, default="")
    subjects = models.JSONField(default=list, blank=True)
    version = models.PositiveSmallIntegerField(default=1)

    class Meta:
        app_label = "observability_app"
        db_table = "observability_audit_purge_record"
        ordering = ("id",)
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"purge {self.run_id}: {self.removed_count} event(s) of seal {self.seal_id}"


class AuditVerification(_AppendOnlyModel):
    """One run of ``verify_audit``: when, how much it read, how many problems it found (for /metrics).

    ``through_seal``/``through_digest`` name the last seal the run checked in full; the next incremental run starts
    there. ``digest`` (HMAC with the signing key) keeps a forged "verified through seal N" row from being trusted.
    """

    id = models.BigAutoField(primary_key=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    events_checked = models.BigIntegerField()
    seals_checked = models.IntegerField()
    problems = models.IntegerField()
    summary = models.JSONField(default=dict)
    full = models.BooleanField(default=True)
    through_seal = models.BigIntegerField(null=True, blank=True)
    through_digest = models.CharField(max_length=64, blank=True, default="")
    digest = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        app_label = "observability_app"
        db_table = "observability_audit_verification"
        ordering = ("-id",)
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"verification {self.pk}: {self.events_checked} event(s), {self.problems} problem(s)"


class LegalHold(_AppendOnlyModel):
    """Keeps matching events from the retention purge: by subject (an artifact id), by event type, or both.

    A hold is placed by one row here and lifted by one :class:`LegalHoldRelease` row; neither is ever edited or
    deleted, and the holds in force are those without a release (``LegalHold.objects.active()``). Placing and
    lifting are also audit events (LEGAL_HOLD_PLACED / LEGAL_HOLD_RELEASED), which verification reads to tell
    whether a purge removed events that a hold covered, even if a hold's rows were deleted behind the app's back.
    """

    id = models.BigAutoField(primary_key=True)
    subject = models.CharField(max_length=255, blank=True, default="", help_text="e.g. an artifact id")
    event_type = models.CharField(max_length=64, blank=True, default="")
    reason = models.TextField()
    placed_by = models.CharField(max_length=255)
    placed_at = models.DateTimeField()

    objects = LegalHoldQuerySet.as_manager()

    class Meta:
        app_label = "observability_app"
        db_table = "observability_legal_hold"
        ordering = ("-id",)
        default_permissions = ("add", "view")

    def __str__(self) -> str:
        scope = " and ".join(filter(None, [self.subject and f"subject {self.subject}", self.event_type]))
        return f"hold #{self.pk} on {scope}"

    @property
    def release_row(self) -> LegalHoldRelease | None:
        try:
            return self.release
        except LegalHoldRelease.DoesNotExist:
            return None

    @property
    def active(self) -> bool:
        return self.release_row is None

    @property
    def released_at(self) -> Any:
        release = self.release_row
        return release.released_at if release else None

    @property
    def released_by(self) -> str:
        release = self.release_row
        return release.released_by if release else ""


class LegalHoldRelease(_AppendOnlyModel):
    """The lifting of one legal hold (at most one per hold: a unique key refuses a second)."""

    id = models.BigAutoField(primary_key=True)
    hold = models.OneToOneField(LegalHold, on_delete=models.PROTECT, related_name="release")
    released_by = models.CharField(max_length=255)
    released_at = models.DateTimeField()
    reason = models.TextField()

    class Meta:
        app_label = "observability_app"
        db_table = "observability_legal_hold_release"
        ordering = ("-id",)
        default_permissions = ("view",)

    def __str__(self) -> str:
        return f"release of hold #{self.hold_id}"
