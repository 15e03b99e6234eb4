from django.urls import path, register_converter

from . import views


class NameConverter:
    """Bucket, artifact and version names: letters, digits, dot, dash, underscore; 1..128 characters."""

    regex = r"[A-Za-z0-9][A-Za-z0-9._\-]{0,127}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(NameConverter, "name")

urlpatterns = [
    path("buckets/<name:bucket>/artifacts/<name:name>/<name:version>", views.artifact, name="artifact"),
    path("buckets/<name:bucket>/artifacts/<name:name>/<name:version>/scan", views.scan_artifact, name="artifact-scan"),
    path(
        "buckets/<name:bucket>/artifacts/<name:name>/<name:version>/overturn",
        views.overturn_decision,
        name="artifact-overturn",
    ),
    path(
        "buckets/<name:bucket>/artifacts/<name:name>/<name:version>/provenance",
        views.verify_provenance,
        name="artifact-provenance",
    ),
]
