"""``manage.py create_auditor_group`` (observability_app.auditors) and the example project's ``create_demo_auditor``."""

from __future__ import annotations

from io import StringIO

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import given
from hypothesis import strategies as st

from observability_app.auditors import AuditorGroupError, ensure_auditor_group, view_permissions

CHANGELIST = "/admin/observability_app/auditevent/"


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _codenames(group: Group) -> set[str]:
    return {f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")}


def expected_permissions() -> set[str]:
    """View permission of every model of the app: audit events, and legal holds (and seals) once they exist."""
    models = apps.get_app_config("observability_app").get_models()
    return {f"observability_app.view_{model._meta.model_name}" for model in models}


@pytest.mark.django_db
def test_creates_the_auditor_group_with_view_permissions_only():
    output = run("create_auditor_group")
    group = Group.objects.get(name="auditor")
    assert _codenames(group) == expected_permissions()
    assert "observability_app.view_auditevent" in _codenames(group)
    try:
        apps.get_model("observability_app", "LegalHold")
    except LookupError:
        pass
    else:
        assert "observability_app.view_legalhold" in _codenames(group)
    assert all(p.codename.startswith("view_") for p in group.permissions.all())
    assert "group 'auditor' created" in output and "granted observability_app.view_auditevent" in output


@pytest.mark.django_db
def test_is_idempotent_and_takes_back_other_permissions():
    run("create_auditor_group")
    group = Group.objects.get(name="auditor")
    extra = Permission.objects.get(codename="change_user")
    group.permissions.add(extra)
    output = run("create_auditor_group")
    assert "group 'auditor' updated" in output and "revoked auth.change_user" in output
    assert _codenames(group) == expected_permissions()
    again = run("create_auditor_group")
    assert "granted" not in again and "revoked" not in again
    assert Group.objects.filter(name="auditor").count() == 1


@pytest.mark.django_db
def test_add_user_makes_a_staff_member_who_can_view_but_not_change(client, django_user_model):
    user = django_user_model.objects.create_user("ivy")
    output = run("create_auditor_group", "--add-user", "ivy")
    assert "added user 'ivy'" in output
    user.refresh_from_db()
    assert user.is_staff and not user.is_superuser
    assert user.groups.filter(name="auditor").exists()
    client.force_login(user)
    assert client.get(CHANGELIST).status_code == 200
    assert client.get(CHANGELIST + "add/").status_code == 403
    assert client.get("/admin/auth/user/").status_code == 403  # nothing else of the admin
    assert "added user" not in run("create_auditor_group", "--add-user", "ivy")


@pytest.mark.django_db
def test_custom_group_name():
    run("create_auditor_group", "--name", "external auditors")
    assert _codenames(Group.objects.get(name="external auditors")) == expected_permissions()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--name", ""], "non-empty"),
        (["--name", "   "], "non-empty"),
        (["--name", "x" * 151], "the limit is 150"),
        (["--name", "a\x00b"], "NUL"),
        (["--add-user", "nobody"], "no user 'nobody'"),
        (["--add-user", "x" * 10_000], "no user"),
        (["--add-user", "bad\x00name"], "no user"),
    ],
)
def test_bad_names_are_refused_before_anything_is_written(args, message):
    with pytest.raises(CommandError, match=message):
        run("create_auditor_group", *args)
    assert not Group.objects.exists()


@pytest.mark.django_db
@given(name=st.text(max_size=200))
def test_any_group_name_is_stored_or_refused_cleanly(name):
    try:
        result = ensure_auditor_group(name)
    except AuditorGroupError:
        assert not name.strip() or len(name) > 150 or "\x00" in name
        return
    assert result.group.name == name.strip()
    assert {p.codename for p in result.group.permissions.all()} == {p.codename for p in view_permissions()}


@pytest.mark.django_db
def test_view_permissions_are_recreated_when_missing():
    Permission.objects.filter(codename="view_auditevent").delete()
    assert "observability_app.view_auditevent" in _codenames(ensure_auditor_group().group)


@pytest.mark.django_db
def test_create_demo_auditor_prints_a_login_once(client, django_user_model):
    output = run("create_demo_auditor")
    assert "auditor login created: username 'auditor', password '" in output
    password = output.split("password '")[1].split("'")[0]
    user = django_user_model.objects.get(username="auditor")
    assert user.is_staff and not user.is_superuser and user.check_password(password)
    assert client.login(username="auditor", password=password)
    assert client.get(CHANGELIST).status_code == 200
    assert client.post(CHANGELIST + "add/", {}).status_code == 403
    second = run("create_demo_auditor")
    assert "exists" in second and password not in second
