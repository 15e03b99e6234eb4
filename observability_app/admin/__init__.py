"""The compliance browser: audit events (``events``) and legal holds (``holds``) in the Django admin."""

from . import events, holds  # noqa: F401  (each module registers its ModelAdmin)
