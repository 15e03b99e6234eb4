from django.apps import AppConfig


class BucketConfig(AppConfig):
    name = "example_project.bucket"
    label = "bucket"
    verbose_name = "Artifact bucket (example)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from observability_app import bucket_metrics

        from .metrics import storage_usage

        bucket_metrics.register_storage_reporter(storage_usage)
