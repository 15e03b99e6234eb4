"""The built wheel, alone, in new Django projects: the README's "Use it in your project" section, literally.

For each target (Python 3.12 with Django 6.0, Python 3.11 with Django 4.2) this

1. makes a fresh virtualenv with that Python and installs the wheel from ``--dist`` and that Django release, and
   nothing else (no ``[dev]`` extra, no checkout on ``sys.path``: the project lives in a temporary directory);
2. runs ``django-admin startproject mysite`` and appends the README's code blocks to the files they name in their
   first line (``# settings.py``, ``# urls.py``), as a new user would paste them;
3. runs ``manage.py migrate`` and ``manage.py check``, then requests ``/health/ready`` and ``/metrics`` and reads
   the JSON access line the request wrote on stdout (the README's ``LOGGING``).

Any failure exits 1 with the step and its output. ``nox -s package`` and ``.ci/run`` run it after ``python -m
build`` and ``twine check``::

    python scripts/package_smoke.py --dist var/dist            # both targets
    python scripts/package_smoke.py --dist var/dist --only 3.12   # one
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
SECTION = "## Use it in your project"
#: (Python, Django release) pairs a new user may have: the newest and the oldest we support.
TARGETS = (("3.12", "6.0"), ("3.11", "4.2"))

#: Run in the new project by ``manage.py shell``: one request to each endpoint, through the README's settings.
PROBE = r"""
import json
from django.test import Client

client = Client(HTTP_HOST="localhost")  # startproject: DEBUG on, ALLOWED_HOSTS empty
ready = client.get("/health/ready", HTTP_X_CORRELATION_ID="smoke-123")
assert ready.status_code == 200, (ready.status_code, ready.content[:2000])
assert ready.json()["status"] == "pass", ready.content
missing = client.get("/no-such-page", HTTP_X_CORRELATION_ID="smoke-404")
assert missing.status_code == 404, missing.status_code
assert missing["X-Correlation-Id"] == "smoke-404", dict(missing.items())
metrics = client.get("/metrics")
assert metrics.status_code == 200, metrics.status_code
assert b"http_requests_total{" in metrics.content, metrics.content[:2000]
print("PROBE-OK", ready.json()["checks"].keys())
"""


def readme_blocks(text: str) -> list[tuple[str, str]]:
    """The section's ```python blocks as (file named on the first line, code)."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end != -1 else len(text)]
    blocks = []
    for code in re.findall(r"```python\n(.*?)```", section, flags=re.S):
        first = code.splitlines()[0]
        match = re.fullmatch(r"#\s*(\S+\.py)\b.*", first.strip())
        if not match:
            raise SystemExit(f"README {SECTION!r}: a python block must name its file on its first line: {first!r}")
        blocks.append((match.group(1), code))
    if not blocks:
        raise SystemExit(f"README {SECTION!r} has no python block")
    return blocks


def find_python(version: str) -> str:
    """The newest pyenv build of ``version`` (pyenv's shims on PATH may refuse a version not selected), else
    ``pythonX.Y`` on PATH."""
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(root.glob(f"{version}.*/bin/python{version}"), reverse=True)
    found = str(candidates[0]) if candidates else shutil.which(f"python{version}")
    if not found:
        raise SystemExit(f"no python{version} under {root} or on PATH")
    return found


def run(step: str, args: list[str], **kwargs) -> subprocess.CompletedProcess[str]:
    shown = " ".join("<script>" if "\n" in str(arg) else str(arg) for arg in args)
    print(f"  $ {shown}", flush=True)
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        out, err = result.stdout[-6000:], result.stderr[-6000:]
        print(f"FAILED: {step} (exit {result.returncode})\n--- stdout\n{out}\n--- stderr\n{err}")
        raise SystemExit(1)
    return result


def smoke(python_version: str, django: str, wheel: Path, workdir: Path) -> None:
    print(f"== wheel {wheel.name} on Python {python_version} with Django {django}", flush=True)
    venv = workdir / f"venv-{python_version}"
    run("virtualenv", [find_python(python_version), "-m", "venv", str(venv)])
    py = str(venv / "bin" / "python")
    major, minor = django.split(".")
    run("install", [py, "-m", "pip", "install", "-q", str(wheel), f"Django>={django},<{major}.{int(minor) + 1}"])
    project = workdir / f"project-{python_version}"
    project.mkdir()
    run("startproject", [str(venv / "bin" / "django-admin"), "startproject", "mysite", "."], cwd=project)
    for name, code in readme_blocks(README.read_text()):
        target = project / "mysite" / name
        if not target.exists():
            raise SystemExit(f"README block names {name}, which startproject did not write")
        with target.open("a") as handle:
            handle.write("\n\n" + code)
    # Only the new project and the installed wheel: neither the checkout nor its settings.
    env = {key: value for key, value in os.environ.items() if not key.startswith(("DJANGO_", "OBSERVABILITY_"))}
    env.pop("PYTHONPATH", None)
    env.pop("DATABASE_URL", None)
    env["OBSERVABILITY_AUDIT_SIGNING_KEY"] = "smoke-test-key-not-a-secret"
    manage = [py, "manage.py"]
    installed = run(
        "where",
        [py, "-c", "import observability_app, django; print(observability_app.__file__, django.get_version())"],
        cwd=project,
        env=env,
    ).stdout.split()
    if not installed[0].startswith(str(venv)) or not installed[1].startswith(django):
        raise SystemExit(f"imported {installed}, not the wheel in {venv} with Django {django}")
    run("migrate", [*manage, "migrate", "--noinput"], cwd=project, env=env)
    run("check", [*manage, "check", "--fail-level", "ERROR"], cwd=project, env=env)
    probe = run("requests", [*manage, "shell", "-c", PROBE], cwd=project, env=env)
    if "PROBE-OK" not in probe.stdout:
        raise SystemExit(f"probe did not finish:\n{probe.stdout}\n{probe.stderr}")
    import json

    lines = [json.loads(line) for line in probe.stdout.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "observability_app.access"]
    if not any(line.get("correlation_id") == "smoke-404" and line.get("status_code") == 404 for line in access):
        raise SystemExit(f"no JSON access line for the 404 with its correlation id on stdout:\n{probe.stdout}")
    print(f"   ok: migrate, check, /health/ready, /metrics, a JSON access line ({len(lines)} JSON lines)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dist", default=str(ROOT / "var" / "dist"), help="where python -m build put the wheel")
    parser.add_argument("--only", help="one Python version of the targets (3.11 or 3.12)")
    options = parser.parse_args()
    wheels = sorted(Path(options.dist).glob("observability_app-*.whl"))
    if len(wheels) != 1:
        print(f"expected one wheel in {options.dist}, found {[w.name for w in wheels]}")
        return 1
    targets = [t for t in TARGETS if options.only in (None, t[0])]
    with tempfile.TemporaryDirectory(prefix="package-smoke-") as tmp:
        for python_version, django in targets:
            smoke(python_version, django, wheels[0].resolve(), Path(tmp))
    print(f"package smoke: ok on {len(targets)} target(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
