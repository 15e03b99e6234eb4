"""The support matrix: the suite on every Python x Django pair we claim (pyproject's classifiers).

Run one pair, a Python or all of it::

    nox -s "tests(3.12-django6.0)"   # one pair
    nox -s tests -p 3.13             # every Django on Python 3.13
    nox -s tests                     # the whole matrix (SQLite; each run makes its own var/test-<pid> file)
    nox -t others                    # every pair but the main one, whole suite
    nox -s fast                      # every pair but the main one, the fast run (what .ci/run adds to `make test`)
    nox -s docs package              # the docs site (strict) and the package (build, twine, wheel smoke test)
    nox -l                           # what there is

``fast`` is the suite with ``-x -q``, fewer hypothesis examples (profile ``matrix``), without the tests marked
``browser``, ``prometheus``, ``gunicorn`` or ``slow`` and without the promtool rule tests (they start external
programs or loop for long, and none depends on the Django release); the main pair runs everything in
``make test``. docs/compatibility.md says what runs where.

Every session has its own virtualenv under ``.nox/`` and installs the package with its ``[dev]`` extra and the
pair's Django. ``DATABASE_URL`` is passed through, so ``DATABASE_URL=postgres://... nox -s tests`` runs a pair on
PostgreSQL; without it the run is SQLite. Extra arguments go to pytest: ``nox -s tests -- -k audit``.

Interpreters are found on ``PATH`` (``python3.12``); pyenv's ``$PYENV_ROOT/versions/*/bin`` (default
``~/.pyenv``) are added to it, so ``pyenv install 3.12 3.13`` is all a developer needs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nox

#: Django release -> the Pythons it supports among ours (Django's own support table).
MATRIX: dict[str, tuple[str, ...]] = {
    "4.2": ("3.11", "3.12"),
    "5.2": ("3.11", "3.12", "3.13"),
    "6.0": ("3.12", "3.13"),
}
#: The main pair: ``make test`` runs it (SQLite and PostgreSQL) in the project's own .venv.
MAIN = ("3.11", "5.2")

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]


def _add_pyenv_to_path() -> None:
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not root.is_dir():
        return
    # Newest patch release first, so "python3.12" is the newest 3.12 pyenv holds.
    found = sorted((str(path / "bin") for path in root.glob("3.*")), reverse=True)
    os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_add_pyenv_to_path()


def _django_spec(release: str) -> str:
    major, minor = release.split(".")
    return f"Django>={release},<{major}.{int(minor) + 1}"


def _pair_param(python: str, django: str) -> nox.param:
    # Tagged "main" or "others": .ci/run runs the main pair through `make test` and the others with `nox -t others`.
    tag = "main" if (python, django) == MAIN else "others"
    return nox.param(python, django, id=f"{python}-django{django}", tags=[tag])


PAIRS = [_pair_param(python, django) for django, pythons in MATRIX.items() for python in pythons]


@nox.session
@nox.parametrize(("python", "django"), PAIRS)
def tests(session: nox.Session, django: str) -> None:
    """The suite on one Python x Django pair."""
    session.install("-e", ".[dev]", _django_spec(django))
    session.run("python", "-c", "import django, sys; print('Django', django.get_version(), 'on', sys.version)")
    session.run("python", "-m", "pytest", *session.posargs)


#: The fast run's pytest arguments (``nox -s fast``; extra arguments after ``--`` are added to them).
FAST_ARGS = ("-x", "-q", "-m", "not browser and not prometheus and not gunicorn and not slow",
             "--ignore=tests/test_prometheus_rules.py")  # fmt: skip
OTHER_PAIRS = [nox.param(python, django, id=f"{python}-django{django}", tags=["fast"])
               for django, pythons in MATRIX.items() for python in pythons if (python, django) != MAIN]  # fmt: skip


@nox.session
@nox.parametrize(("python", "django"), OTHER_PAIRS)
def fast(session: nox.Session, django: str) -> None:
    """The fast run of the suite on one pair other than the main one (what .ci/run runs for the matrix)."""
    session.install("-e", ".[dev]", _django_spec(django))
    session.run("python", "-c", "import django, sys; print('Django', django.get_version(), 'on', sys.version)")
    session.run("python", "-m", "pytest", *FAST_ARGS, *session.posargs, env={"HYPOTHESIS_PROFILE": "matrix"})


@nox.session(python=MAIN[0])
def docs(session: nox.Session) -> None:
    """The documentation site, strict: a broken link, a missing page or an unlisted one fails the build."""
    session.install("mkdocs>=1.6")
    session.run("mkdocs", "build", "--strict", "--site-dir", "var/site")


@nox.session(python=MAIN[0])
def package(session: nox.Session) -> None:
    """The sdist and the wheel, checked by twine, then the wheel alone in new Django 6.0 and 4.2 projects."""
    session.install("build>=1.2", "twine>=5.1")
    shutil.rmtree("var/dist", ignore_errors=True)  # an older version's files would be checked and installed too
    session.run("python", "-m", "build", "--outdir", "var/dist")
    session.run("python", "-m", "twine", "check", "--strict", *map(str, Path("var/dist").glob("*")))
    session.run("python", "scripts/package_smoke.py", "--dist", "var/dist", *session.posargs)
