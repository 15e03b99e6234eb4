"""The example service's data: artifact versions stored in the database."""

from django.db import models


class Artifact(models.Model):
    bucket = models.CharField(max_length=128)
    name = models.CharField(max_length=128)
    version = models.CharField(max_length=64)
    digest = models.CharField(max_length=71)  # "sha256:" + 64 hex
    size_bytes = models.BigIntegerField()
    content = models.BinaryField()
    safety_decision = models.CharField(max_length=16, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["bucket", "name", "version"], name="bucket_artifact_unique_version")
        ]

    def __str__(self) -> str:
        return self.artifact_id

    @property
    def artifact_id(self) -> str:
        return f"{self.bucket}/{self.name}@{self.version}"
