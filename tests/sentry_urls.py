"""The example project's URLs plus one view that fails, for the Sentry end-to-end test (tests/test_sentry.py)."""

from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def fail(request):
    password = "hunter2-local-variable"  # a stack-frame local Sentry would send
    owner_email = request.POST.get("owner_email")  # noqa: F841  (a local too, named in REDACT_FIELDS)
    raise RuntimeError(f"upload failed for token=tok-in-message-42 and password={password}")


urlpatterns = [path("boom/", fail), path("", include("example_project.urls"))]
