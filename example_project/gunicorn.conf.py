"""gunicorn configuration of the example project: ``gunicorn -c example_project/gunicorn.conf.py``.

* Several workers (``GUNICORN_WORKERS``, default 3) with prometheus_client's multi-process mode: every worker writes
  its metrics to ``PROMETHEUS_MULTIPROC_DIR`` and /metrics, served by any worker, adds them up. The directory is
  emptied when the master reads this file (values of a previous run would otherwise be added in) and must belong
  to this master alone.
* ``child_exit``: a dead worker's live gauges are dropped and its totals folded into one archive file, so totals
  stay right and the directory stays small however often workers are recycled (``max_requests``).
* ``gthread`` workers (``GUNICORN_THREADS``, default 4 threads each) that accept no more connections than they have
  threads: while some threads wait on a hung database (each at most the bound of ``DATABASE_STATEMENT_TIMEOUT``,
  see observability_app/database.py), the others, and the other workers, still answer /health/live and
  /health/ready; a full worker leaves new connections to the others instead of queueing them behind its hung
  requests. ``timeout`` (30 s) stays above every database bound: the app answers 503 before gunicorn kills anything.
  docs/deployment.md section 1b.
* ``post_fork``: tracing drops any span-export state inherited from the master (only matters with
  ``preload_app = True``; harmless otherwise).

Every value can be overridden with the usual ``GUNICORN_CMD_ARGS`` or the variables read below.
"""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_VAR = os.environ.get("EXAMPLE_VAR_DIR", os.path.join(os.path.dirname(_HERE), "var"))

# Set before any worker imports prometheus_client: the mode is chosen when the first metric is created.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", os.path.join(_VAR, "prometheus-multiproc"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")


def _prepare_metrics_directory():
    """Empty the directory once per master, here rather than in on_starting: with preload_app the master loads the
    app (and creates its metric files) before on_starting runs. A reload (HUP) re-reads this file in the same
    master; the marker keeps it from wiping what the running workers write."""
    path = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    if os.environ.get("_OBSERVABILITY_MULTIPROC_PREPARED") == path:
        return
    import sys

    sys.path.insert(0, os.path.dirname(_HERE))
    from observability_app.metrics.multiprocess import prepare_directory

    prepare_directory(path)
    os.environ["_OBSERVABILITY_MULTIPROC_PREPARED"] = path


_prepare_metrics_directory()

wsgi_app = "example_project.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "3"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# A worker whose threads are all busy stops accepting: the kernel hands new connections to a worker with a free thread.
worker_connections = threads
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 20
keepalive = 0  # with worker_connections = threads an idle kept-alive connection would hold a thread's place
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
preload_app = os.environ.get("GUNICORN_PRELOAD", "0") == "1"
accesslog = None  # the app writes its own JSON access log
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
chdir = os.path.dirname(_HERE)
# gunicorn 25.1+ opens a control socket at one fixed path per user; two masters on one host would collide.
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
if os.environ.get("GUNICORN_CONTROL_SOCKET"):
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]


def post_fork(server, worker):
    """Worker, right after fork: no tracing exporter state shared with the master."""
    from observability_app.tracing import post_fork as tracing_post_fork

    tracing_post_fork(server, worker)


def child_exit(server, worker):
    """Master, after a worker died: clean its live gauges, keep its totals in the archive."""
    from observability_app.metrics.multiprocess import mark_process_dead

    mark_process_dead(worker.pid)
