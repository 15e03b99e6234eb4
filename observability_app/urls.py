"""URLs of the app: ``path("", include("observability_app.urls"))``.

/metrics, /health/live, /health/ready and /api/v1/health (readiness alias). Their views live in the modules of
their concern; this URLconf only points at them.
"""

from django.urls import path

from .health import views as health_views
from .metrics import views as metrics_views

__all__ = ["app_name", "urlpatterns"]


app_name = "observability_app"

urlpatterns: list = [
    path("metrics", metrics_views.metrics, name="metrics"),
    path("health/live", health_views.live, name="health-live"),
    path("health/ready", health_views.ready, name="health-ready"),
    path("api/v1/health", health_views.ready, name="health"),
]
