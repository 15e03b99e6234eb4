"""A real Prometheus server (Debian's ``prometheus``) of the test's own: started on a free port with the scrape
jobs the test gives, queried over its HTTP API, stopped at the end.

Tests that need it are marked ``prometheus``; the binary comes from ``scripts/install-system-deps.sh``. Exemplar
storage is on (the latency histogram's trace ids); ``rule_files`` are evaluated every ``evaluation_interval``.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port, http, require_tool

BINARY = "/usr/bin/prometheus"


def static_jobs(targets: dict[str, str], token: str | None = None) -> str:
    """``scrape_configs`` entries for ``{job: "host:port"}``, with a bearer token when given."""
    auth = f"    authorization:\n      type: Bearer\n      credentials: {token}\n" if token else ""
    return "".join(
        f'  - job_name: {job}\n{auth}    static_configs:\n      - targets: ["{target}"]\n'
        for job, target in targets.items()
    )


class PrometheusServer:
    """``scrape_configs``: the YAML list under ``scrape_configs:`` (each job indented by two spaces)."""

    def __init__(
        self,
        directory: Path,
        scrape_configs: str,
        interval: str = "1s",
        rule_files: tuple[Path, ...] = (),
        evaluation_interval: str = "1s",
    ) -> None:
        self.directory = directory
        self.scrape_configs = scrape_configs
        self.interval = interval
        self.rule_files = rule_files
        self.evaluation_interval = evaluation_interval
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> PrometheusServer:
        binary = require_tool(BINARY)
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        rules = "".join(f"  - {path}\n" for path in self.rule_files)
        config.write_text(
            f"global:\n  scrape_interval: {self.interval}\n  scrape_timeout: {self.interval}\n"
            f"  evaluation_interval: {self.evaluation_interval}\n"
            + (f"rule_files:\n{rules}" if rules else "")
            + f"scrape_configs:\n{self.scrape_configs}"
        )
        with (self.directory / "prometheus.log").open("wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.directory / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                    "--enable-feature=exemplar-storage",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if http(f"{self.base}/-/ready", timeout=2).status == 200:
                    return self
            except OSError:
                pass
            assert self.process.poll() is None, self.output()
            time.sleep(0.3)
        pytest.fail(f"Prometheus not ready within 60 s:\n{self.output()}")

    def output(self) -> str:
        log = self.directory / "prometheus.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """``GET /api/v1/<path>``'s data; an answer other than success fails the test."""
        answer = http(f"{self.base}/api/v1/{path}?" + urllib.parse.urlencode(params), timeout=30)
        assert answer.status == 200, answer.body[:300]
        data = json.loads(answer.body)
        assert data["status"] == "success", data
        return data["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant query's result vector; an answer other than success fails the test."""
        return self.api("query", query=expression)["result"]

    def scrapes(self, job: str) -> float:
        """How many successful scrapes of ``job`` Prometheus has stored."""
        return self.value(f'sum(count_over_time(up{{job="{job}"}}[1h]))') or 0.0

    def value(self, expression: str) -> float | None:
        """The first sample's value, or None when the result is empty."""
        result = self.query(expression)
        return float(result[0]["value"][1]) if result else None

    def wait_for(
        self, expression: str, accept: Callable[[list[dict[str, Any]]], Any], timeout: float = 60
    ) -> list[dict[str, Any]]:
        """The first result of ``expression`` that ``accept`` takes; fails after ``timeout`` with the last one."""
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expression)
            if accept(result):
                return result
            time.sleep(0.5)
        pytest.fail(f"{expression} never satisfied the test within {timeout} s; last result {result}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
