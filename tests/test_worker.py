"""observability_app.worker: heartbeat judgement, the state file, the worker's HTTP port and Pushgateway pushes."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given
from hypothesis import strategies as st

from observability_app import worker
from tests.servers import http, parse, require_tool


def _state(**changes) -> worker.WorkerState:
    state = worker.WorkerState(heartbeat=time.time(), queues=["scans"], broker_connected=True, ready=True)
    for key, value in changes.items():
        setattr(state, key, value)
    return state


def test_live_and_ready_from_the_heartbeat():
    now = time.time()
    assert worker.evaluate(_state(), now, 30).ready
    stale = worker.evaluate(_state(heartbeat=now - 31), now, 30)
    assert not stale.live and not stale.ready and stale.checks["heartbeat"]["status"] == "fail"
    disconnected = worker.evaluate(_state(broker_connected=False), now, 30)
    assert disconnected.live and not disconnected.ready
    assert not worker.evaluate(_state(queues=[]), now, 30).ready
    assert not worker.evaluate(_state(ready=False), now, 30).ready
    assert not worker.evaluate(_state(heartbeat=now + 3600), now, 30).live  # from the future: not trusted
    assert not worker.evaluate(None, now, 30).live
    status, body = worker.evaluate(_state(broker_connected=False), now, 30).report("live")
    assert status == 200 and set(body["checks"]) == {"heartbeat"}
    status, body = worker.evaluate(_state(broker_connected=False), now, 30).report("ready")
    assert status == 503 and body["status"] == "fail" and body["checks"]["broker"]["status"] == "fail"


def test_a_worker_reconnecting_to_its_broker_stays_live_and_is_not_ready():
    """The consumer loop beats no more while it reconnects; liveness holds (a restart brings no broker back)."""
    now = time.time()
    lost = _state(heartbeat=now - 600, broker_connected=False, disconnected_at=now - 599)
    waiting = worker.evaluate(lost, now, 30)
    assert waiting.live and not waiting.ready
    assert waiting.checks["broker"]["reason"] == "reconnecting to the broker"
    assert waiting.checks["broker"]["disconnected_seconds"] == pytest.approx(599, abs=1)
    # A loop that had already stopped beating before the broker went is stuck, broker or not.
    assert not worker.evaluate(
        _state(heartbeat=now - 600, broker_connected=False, disconnected_at=now - 60), now, 30
    ).live
    # Connected again but no beat since: stuck.
    assert not worker.evaluate(_state(heartbeat=now - 600, disconnected_at=now - 599), now, 30).live
    assert not worker.evaluate(_state(heartbeat=0.0, broker_connected=False, disconnected_at=now), now, 30).live
    assert worker.WorkerState.from_json(lost.as_json()) == lost
    legacy = json.loads(_state().as_json())
    del legacy["disconnected_at"]
    assert worker.WorkerState.from_json(json.dumps(legacy)).disconnected_at == 0.0


def test_state_file_round_trip_and_refusals(tmp_path):
    path = str(tmp_path / "state.json")
    state = _state()
    worker.write_state(state, path)
    assert worker.read_state(path) == state
    (tmp_path / "big.json").write_bytes(b" " * (worker.MAX_STATE_BYTES + 1))
    with pytest.raises(ValueError, match="bytes"):
        worker.read_state(str(tmp_path / "big.json"))
    with pytest.raises(OSError):
        worker.read_state(str(tmp_path / "absent.json"))


@given(
    data=st.one_of(
        st.text(max_size=200),
        st.dictionaries(
            st.sampled_from(["pid", "heartbeat", "started_at", "queues", "ready", "hostname", "x"]),
            st.one_of(
                st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20), st.lists(st.integers())
            ),
        ).map(json.dumps),
    )
)
def test_hostile_state_files_raise_value_error_never_anything_else(data):
    try:
        state = worker.WorkerState.from_json(data)
    except ValueError:
        return
    assert isinstance(state.heartbeat, float) and all(isinstance(queue, str) for queue in state.queues)


def test_port_and_seconds_settings_are_parsed_or_refused():
    assert worker.port_setting(None) is None and worker.port_setting("") is None
    assert worker.port_setting("9100") == 9100 and worker.port_setting(0) == 0
    for bad in ("http", -1, 70000, True, 1.5, " 9 9"):
        with pytest.raises(ValueError, match="WORKER_METRICS_PORT"):
            worker.port_setting(bad)


@pytest.mark.django_db
def test_the_port_serves_metrics_and_probes_and_refuses_the_rest():
    state = _state()
    server = worker.WorkerServer(lambda: state, address="127.0.0.1", port=0).start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        answer = http(base + "/metrics")
        assert answer.status == 200 and answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert any(name == "observability_build_info" for name, _labels in parse(answer.body.decode()))
        assert http(base + "/health/ready").json()["status"] == "pass"
        state.broker_connected = False
        assert http(base + "/health/ready").status == 503 and http(base + "/health/live").status == 200
        assert http(base + "/" + "x" * 5000).status in (404, 414)
        assert http(base + "/metrics", method="POST", data=b"x").status == 501
    finally:
        server.stop()


class _Gateway(BaseHTTPRequestHandler):
    pushed: list[tuple[str, str, bytes]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).pushed.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.django_db
def test_pushes_to_a_pushgateway_what_promtool_accepts(tmp_path):
    promtool = require_tool("/usr/bin/promtool")
    _Gateway.pushed = []
    gateway = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{gateway.server_address[1]}/"
        pusher = worker.Pusher(url, "artifact-service-worker", "host/1 a", 0.2).start()
        time.sleep(0.7)
        pusher.stop()
        gateway.server_close()
        assert worker.Pusher("http://127.0.0.1:1", "j", "i", 0.5).push() is False  # refused: logged, not raised
    finally:
        gateway.shutdown()
    assert len(_Gateway.pushed) >= 3
    path, content_type, body = _Gateway.pushed[-1]
    assert path == "/metrics/job/artifact-service-worker/instance/host%2F1%20a"
    assert content_type.startswith("text/plain; version=0.0.4")
    checked = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def _ids(settings, monkeypatch=None, **options) -> list[str]:
    from django.core.checks import run_checks

    settings.OBSERVABILITY = {**settings.OBSERVABILITY, **options}
    return [message.id.rsplit(".", 1)[-1] for message in run_checks() if message.id.startswith("observability_app.")]


def test_system_checks_of_the_worker_settings(settings, monkeypatch):
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    assert not {"E040", "E041", "E042", "E044", "E045", "W041"} & set(_ids(settings))
    assert "E040" in _ids(settings, WORKER_METRICS_PORT="http")
    assert "E041" in _ids(settings, WORKER_PUSHGATEWAY_URL="ftp://x")
    assert "E042" in _ids(settings, WORKER_HEARTBEAT_INTERVAL=0)
    assert "E042" in _ids(settings, WORKER_PUSH_INTERVAL="soon")
    assert "E044" in _ids(settings, CELERY_APP="example_project.nowhere.app")
    assert "E044" in _ids(settings, CELERY_APP="example_project.settings.DEBUG")
    assert "E045" in _ids(settings, WORKER_BACKLOG_QUEUES=[1, 2])
    assert "E045" not in _ids(settings, WORKER_BACKLOG_QUEUES="scans,celery")
    assert "W041" in _ids(settings, WORKER_METRICS_PORT=9100)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "/tmp")
    assert "W041" not in _ids(settings, WORKER_METRICS_PORT=9100)


def test_missing_instrumentation_is_named(monkeypatch, settings):
    from observability_app import tracing

    monkeypatch.setattr(tracing, "INSTRUMENTATIONS", (("json", "observability_no_such_instrumentation:X"),))
    assert tracing.missing_instrumentations() == ["json"]
    assert "W040" in _ids(settings, TRACING_ENABLED=True)
