"""Admin for legal holds: compliance staff place holds (add form) and lift them (an action); never delete."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages

from ..audit import holds, registry
from ..audit.exceptions import InvalidAuditEvent
from ..audit.models import LegalHold

__all__ = ["LegalHoldAdmin", "LegalHoldForm"]


class LegalHoldForm(forms.ModelForm):
    class Meta:
        model = LegalHold
        fields = ("subject", "event_type", "reason")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        if not (data.get("subject") or "").strip() and not (data.get("event_type") or "").strip():
            raise forms.ValidationError("Give a subject (e.g. an artifact id), an event type, or both.")
        event_type = (data.get("event_type") or "").strip()
        if event_type and event_type not in {t.name for t in registry.all_types()}:
            self.add_error("event_type", f"{event_type[:64]!r} is not a registered event type.")
        return data


@admin.register(LegalHold)
class LegalHoldAdmin(admin.ModelAdmin):
    list_display = ("id", "subject", "event_type", "placed_by", "placed_at", "released_at", "released_by")
    list_select_related = ("release",)
    list_filter = ("event_type",)
    search_fields = ("=subject",)
    fields = ("subject", "event_type", "reason")
    form = LegalHoldForm
    actions = ("lift_holds",)

    def get_readonly_fields(self, request: Any, obj: LegalHold | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return (
            "subject",
            "event_type",
            "reason",
            "placed_by",
            "placed_at",
            "released_by",
            "released_at",
        )

    def get_fields(self, request: Any, obj: LegalHold | None = None) -> tuple[str, ...]:
        return self.fields if obj is None else self.get_readonly_fields(request, obj)

    def has_change_permission(self, request: Any, obj: LegalHold | None = None) -> bool:
        return False

    def has_delete_permission(self, request: Any, obj: LegalHold | None = None) -> bool:
        return False

    def save_model(self, request: Any, obj: LegalHold, form: Any, change: bool) -> None:
        placed = holds.place(
            subject=obj.subject, event_type=obj.event_type, reason=obj.reason, placed_by=request.user.get_username()
        )
        obj.pk = placed.pk
        obj.placed_at, obj.placed_by = placed.placed_at, placed.placed_by
        obj._state.adding = False

    @admin.action(description="Lift the selected holds", permissions=["add"])
    def lift_holds(self, request: Any, queryset: Any) -> None:
        lifted = 0
        for hold in queryset.active():
            try:
                holds.release(hold, released_by=request.user.get_username(), reason="lifted in the admin")
                lifted += 1
            except InvalidAuditEvent as exc:
                self.message_user(request, str(exc), messages.ERROR)
        self.message_user(request, f"{lifted} hold(s) lifted.")
