"""The compliance browser: audit events (``events``) and legal holds (``holds``) in the Django admin.

The default admin site's index shows the audit trail's integrity at a glance
(``admin/observability_app/index.html``, which extends the admin's own index), unless the project set an
``index_template`` of its own.
"""

from django.contrib import admin

from . import events, holds  # noqa: F401  (each module registers its ModelAdmin)

__all__ = ["INDEX_TEMPLATE"]


INDEX_TEMPLATE = "admin/observability_app/index.html"

if admin.site.index_template is None:
    admin.site.index_template = INDEX_TEMPLATE
