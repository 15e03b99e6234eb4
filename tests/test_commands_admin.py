"""``manage.py create_auditor_group`` (observability_app.admin.permissions), its deprecated alias
observability_app.auditors, and the example project's ``create_demo_auditor``."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.contrib.auth.models import Group, Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import given
from hypothesis import strategies as st

from observability_app.admin.permissions import AuditorGroupError, ensure_auditor_group, view_permissions

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


def test_the_old_module_name_still_works_and_warns_its_importer():
    """``observability_app.auditors`` (before 0.2) re-exports the same objects and warns where it is imported."""
    from observability_app.admin import permissions

    sys.modules.pop("observability_app.auditors", None)
    with pytest.warns(DeprecationWarning, match=r"import from observability_app\.admin\.permissions") as caught:
        import observability_app.auditors as old
    assert [warning.filename for warning in caught] == [__file__]  # the importer's line, not importlib's
    assert old.__all__ == permissions.__all__
    assert all(getattr(old, name) is getattr(permissions, name) for name in permissions.__all__)


def test_the_package_and_the_example_do_not_import_the_old_module_name():
    """Run as an operator would, the command loads no deprecated module (the example's commands neither)."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c",
         "import django; django.setup();"
         " import observability_app.management.commands.create_auditor_group,"
         " example_project.bucket.management.commands.create_demo_auditor, sys;"
         " print('observability_app.auditors' in sys.modules)"],
        cwd=root, env={**os.environ, "DJANGO_SETTINGS_MODULE": "example_project.settings"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "False"), done.stderr
