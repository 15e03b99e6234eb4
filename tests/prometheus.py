"""A real Prometheus for end-to-end tests: started on a free port with a generated configuration, queried over HTTP.

Used by the tests that scrape the example project (tests/test_prometheus_server.py, tests/test_ops_live.py).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port, http, require_tool


class Prometheus:
    """``with Prometheus(tmp_path, targets={"job": "127.0.0.1:port"}) as prom: prom.query("up")``."""

    def __init__(
        self,
        directory: Path,
        targets: dict[str, str],
        interval: str = "1s",
        token: str | None = None,
        rule_files: tuple[Path, ...] = (),
        evaluation_interval: str = "1s",
    ) -> None:
        self.directory = directory
        self.targets = targets
        self.interval = interval
        self.token = token
        self.rule_files = rule_files
        self.evaluation_interval = evaluation_interval
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def config(self) -> str:
        jobs = []
        for job, target in self.targets.items():
            auth = f"    authorization:\n      type: Bearer\n      credentials: {self.token}\n" if self.token else ""
            jobs.append(f'  - job_name: {job}\n{auth}    static_configs:\n      - targets: ["{target}"]\n')
        rules = "".join(f"  - {path}\n" for path in self.rule_files)
        return (
            f"global:\n  scrape_interval: {self.interval}\n  scrape_timeout: {self.interval}\n"
            f"  evaluation_interval: {self.evaluation_interval}\n"
            + (f"rule_files:\n{rules}" if rules else "")
            + "scrape_configs:\n"
            + "".join(jobs)
        )

    def __enter__(self) -> Prometheus:
        binary = require_tool("/usr/bin/prometheus")
        config = self.directory / "prometheus.yml"
        config.write_text(self.config())
        self.log = (self.directory / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
                "--enable-feature=exemplar-storage",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if http(f"{self.base}/-/ready", timeout=2).status == 200:
                    return self
            except OSError:
                pass
            assert self.process.poll() is None, (self.directory / "prometheus.log").read_text()
            time.sleep(0.3)
        pytest.fail("Prometheus did not become ready in 60 s")

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self.log.close()

    def api(self, path: str, **params: str) -> Any:
        answer = http(f"{self.base}/api/v1/{path}?" + urllib.parse.urlencode(params), timeout=30)
        assert answer.status == 200, answer.body[:500]
        data = json.loads(answer.body)
        assert data["status"] == "success", data
        return data["data"]

    def query(self, expression: str, at: float | None = None) -> list[dict]:
        params = {"query": expression}
        if at is not None:
            params["time"] = f"{at:.3f}"
        return self.api("query", **params)["result"]

    def value(self, expression: str, at: float | None = None) -> float:
        """The single value of a scalar-like instant query (one series expected)."""
        result = self.query(expression, at)
        assert len(result) == 1, f"{expression}: {result}"
        return float(result[0]["value"][1])

    def wait_for(self, expression: str, accept: Any, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        result: list[dict] = []
        while time.monotonic() < deadline:
            result = self.query(expression)
            if accept(result):
                return result
            time.sleep(0.3)
        pytest.fail(f"{expression} never satisfied the test within {timeout} s; last result {result}")

    def scrapes(self, job: str) -> float:
        """How many successful scrapes of ``job`` Prometheus has stored (count_over_time of up == 1)."""
        result = self.query(f'sum(count_over_time(up{{job="{job}"}}[1h]))')
        return float(result[0]["value"][1]) if result else 0.0
