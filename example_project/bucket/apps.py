from django.apps import AppConfig


class BucketConfig(AppConfig):
    name = "example_project.bucket"
    label = "bucket"
    verbose_name = "Artifact bucket (example)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from observability_app import bucket_metrics

        from .metrics import storage_usage
        from .scanner import REASONS, SCANNER, SCANNER_VERSION

        bucket_metrics.register_storage_reporter(storage_usage)
        # The scanner's version, name and reasons are known now: their series exist at zero from start-up.
        bucket_metrics.declare_label_values("scanner_version", [SCANNER_VERSION])
        bucket_metrics.declare_label_values("scanner", [SCANNER])
        bucket_metrics.declare_label_values("reason", REASONS)
