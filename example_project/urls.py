from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("observability_app.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("example_project.bucket.urls")),
]
