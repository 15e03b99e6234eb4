"""Database triggers that refuse UPDATE and DELETE of audit events (see observability_app.audit.db)."""

from django.db import migrations


def install(apps, schema_editor):
    from observability_app.audit.db import install_triggers

    install_triggers(schema_editor)


def uninstall(apps, schema_editor):
    from observability_app.audit.db import uninstall_triggers

    uninstall_triggers(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("observability_app", "0001_initial")]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
