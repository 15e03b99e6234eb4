"""OTLP metrics push: what /metrics shows arrives at a local OTLP/HTTP receiver, decoded from protobuf.

The receiver is a real HTTP server in the test; the payload is decoded with opentelemetry-proto's own message
class, as a collector would. The values are compared with prometheus_client's samples, not with our converter.
"""

from __future__ import annotations

import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.test import override_settings
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from observability_app import checks
from observability_app.integrations import otlp_metrics
from observability_app.metrics.registry import REGISTRY

from .test_example_api import URL, put


class Receiver:
    def __init__(self, status: int = 200) -> None:
        self.requests: list[tuple[str, dict, bytes]] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
                receiver.arrived.set()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/metrics"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def decoded(self, index: int = -1) -> ExportMetricsServiceRequest:
        message = ExportMetricsServiceRequest()
        message.ParseFromString(self.requests[index][2])
        return message

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


def _metrics(message: ExportMetricsServiceRequest) -> dict:
    (resource_metrics,) = message.resource_metrics
    return {metric.name: metric for scope in resource_metrics.scope_metrics for metric in scope.metrics}


def _attributes(point) -> dict:
    return {item.key: item.value.string_value for item in point.attributes}


@pytest.mark.django_db
def test_a_push_carries_the_request_counter_and_histogram_as_metrics_shows_them(client, receiver):
    put(client)
    assert client.get(URL).status_code == 200
    pusher = otlp_metrics.OtlpMetricsPusher(receiver.url, interval=3600)
    assert pusher.push() is True
    path, headers, _ = receiver.requests[-1]
    assert path == "/v1/metrics" and headers["content-type"] == "application/x-protobuf"
    message = receiver.decoded()
    resource = {item.key: item.value.string_value for item in message.resource_metrics[0].resource.attributes}
    assert resource["service.name"] and resource["service.instance.id"].endswith(f":{os.getpid()}")
    metrics = _metrics(message)

    requests = metrics["http_requests"].sum
    assert requests.is_monotonic and requests.aggregation_temporality == 2  # CUMULATIVE
    for point in requests.data_points:
        labels = _attributes(point)
        assert point.as_double == REGISTRY.get_sample_value("http_requests_total", labels)
    route_points = [p for p in requests.data_points if _attributes(p).get("method") == "GET" and p.as_double >= 1]
    assert route_points, [(_attributes(p), p.as_double) for p in requests.data_points]

    histograms = [m for m in metrics.values() if m.WhichOneof("data") == "histogram"]
    assert histograms
    for metric in histograms:
        for point in metric.histogram.data_points:
            assert sum(point.bucket_counts) == point.count
            assert len(point.bucket_counts) == len(point.explicit_bounds) + 1
            labels = _attributes(point)
            assert point.count == REGISTRY.get_sample_value(f"{metric.name}_count", labels)
    gauges = [m for m in metrics.values() if m.WhichOneof("data") == "gauge"]
    assert gauges  # process and catalog gauges
    pusher.stop(final_push=False)


def test_a_refusing_or_absent_collector_is_a_warning_not_an_error(caplog):
    refusing = Receiver(status=500)
    try:
        pusher = otlp_metrics.OtlpMetricsPusher(refusing.url, interval=3600, timeout=2)
        assert pusher.push() is False
    finally:
        refusing.close()
    absent = otlp_metrics.OtlpMetricsPusher(refusing.url, interval=3600, timeout=2)  # the server is gone
    assert absent.push() is False
    assert any("OTLP metrics export" in record.getMessage() for record in caplog.records)


def test_setup_from_settings_pushes_in_the_background_and_once_more_on_stop(receiver):
    with override_settings(OBSERVABILITY={"METRICS_OTLP_ENDPOINT": receiver.url, "METRICS_OTLP_INTERVAL": 0.05}):
        pusher = otlp_metrics.setup()
        try:
            assert pusher is not None and receiver.arrived.wait(30)
        finally:
            otlp_metrics._pusher = None
            pushed = len(receiver.requests)
            pusher.stop()
    assert len(receiver.requests) > pushed  # the final push at stop
    assert _metrics(receiver.decoded())  # every push holds the families, the last one included


@pytest.mark.parametrize("bad", ["collector:4318", "ftp://x/v1/metrics", 5])
def test_a_bad_endpoint_is_reported(bad):
    with override_settings(OBSERVABILITY={"METRICS_OTLP_ENDPOINT": bad}):
        assert "observability_app.E035" in [error.id for error in checks.check_metrics_tracing_health()]


def test_without_an_endpoint_nothing_starts():
    with override_settings(OBSERVABILITY={}):
        assert otlp_metrics.setup() is None
