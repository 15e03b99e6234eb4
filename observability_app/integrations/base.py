"""The one base of every integration: what it needs installed, and an idempotent install."""

from __future__ import annotations

from importlib import import_module
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

__all__ = ["Integration"]


class Integration:
    """An integration with a library the app does not depend on.

    Subclasses name the ``library`` module and the ``extra`` that installs it, and implement :meth:`setup`.
    :meth:`install` imports the library first, so a missing one is a clear error naming the extra, not an
    ``ImportError`` from deep inside, and runs :meth:`setup` once however often it is called.
    """

    name: ClassVar[str] = ""
    library: ClassVar[str] = ""
    extra: ClassVar[str] = ""

    def __init__(self) -> None:
        self.installed = False

    @classmethod
    def require(cls) -> Any:
        """The library's module; ImproperlyConfigured naming the extra when it is not installed."""
        try:
            return import_module(cls.library)
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"The {cls.name} integration needs {cls.library}, which cannot be imported ({exc}): "
                f"pip install 'observability_app[{cls.extra}]'"
            ) from None

    def install(self, *args: Any, **kwargs: Any) -> Integration:
        self.require()
        if not self.installed:
            self.setup(*args, **kwargs)
            self.installed = True
        return self

    def setup(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError
