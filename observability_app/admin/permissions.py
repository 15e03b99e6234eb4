"""The "auditor" group: who may browse the audit trail in the admin, and only browse it.

:func:`ensure_auditor_group` creates or updates the group so that it holds exactly the view permission of every
model of this app (audit events, and legal holds and seals where the installed version has them) and nothing
else: a change or delete permission added to the group by hand is taken away again. ``manage.py
create_auditor_group`` is its doorway.

*Changed in 0.2*: moved here from ``observability_app.auditors`` (the admin's permissions live with the admin);
the old module still re-exports these names, with a ``DeprecationWarning``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction

AUDITOR_GROUP = "auditor"
APP_LABEL = "observability_app"

__all__ = ["AUDITOR_GROUP", "AuditorGroupError", "AuditorGroupResult", "ensure_auditor_group", "view_permissions"]


class AuditorGroupError(ValueError):
    """A group name or user name that cannot be used; the message names it and the fix."""


@dataclass
class AuditorGroupResult:
    """What :func:`ensure_auditor_group` did."""

    group: Group
    created: bool
    permissions: list[str] = field(default_factory=list)
    granted: list[str] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    users_added: list[str] = field(default_factory=list)


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise AuditorGroupError(f"group name must be a non-empty string, got {name!r}")
    if "\x00" in name:
        raise AuditorGroupError("group name must not contain NUL characters")
    max_length = Group._meta.get_field("name").max_length
    if max_length is not None and len(name) > max_length:
        raise AuditorGroupError(f"group name is {len(name)} characters long; the limit is {max_length}")
    return name.strip()


def view_permissions() -> list[Permission]:
    """The view permission of every model of this app, created when missing (a model added after ``migrate``)."""
    permissions = []
    for model in apps.get_app_config(APP_LABEL).get_models():
        opts = model._meta
        if "view" not in opts.default_permissions:
            continue
        content_type = ContentType.objects.get_for_model(model)
        permission, _ = Permission.objects.get_or_create(
            content_type=content_type,
            codename=f"view_{opts.model_name}",
            defaults={"name": f"Can view {opts.verbose_name_raw}"},
        )
        permissions.append(permission)
    return permissions


def _label(permission: Permission) -> str:
    return f"{permission.content_type.app_label}.{permission.codename}"


def ensure_auditor_group(name: str = AUDITOR_GROUP, *, users: Iterable[str] = ()) -> AuditorGroupResult:
    """Create or update the auditor group; make ``users`` (user names) staff members of it.

    Idempotent: a second run changes nothing. Raises :class:`AuditorGroupError` for a bad group name or an unknown
    user, before anything is written.
    """
    name = _check_name(name)
    User = get_user_model()
    usernames = list(users)
    with transaction.atomic():
        members = []
        for username in usernames:
            try:
                if not isinstance(username, str) or "\x00" in username:
                    raise User.DoesNotExist  # no user name holds NUL; PostgreSQL would refuse to compare it
                members.append(User._default_manager.get_by_natural_key(username))
            except (User.DoesNotExist, ValueError, TypeError):
                raise AuditorGroupError(
                    f"no user {str(username)[:80]!r}: create the user first (the admin's Users page), then add it"
                ) from None
        group, created = Group.objects.get_or_create(name=name)
        wanted = view_permissions()
        current = set(group.permissions.select_related("content_type"))
        group.permissions.set(wanted)
        result = AuditorGroupResult(
            group=group,
            created=created,
            permissions=sorted(_label(p) for p in wanted),
            granted=sorted(_label(p) for p in set(wanted) - current),
            revoked=sorted(_label(p) for p in current - set(wanted)),
        )
        for user in members:
            if not user.is_staff:
                user.is_staff = True  # the admin only lets staff in
                user.save(update_fields=["is_staff"])
            if not user.groups.filter(pk=group.pk).exists():
                user.groups.add(group)
                result.users_added.append(user.get_username())
    return result
