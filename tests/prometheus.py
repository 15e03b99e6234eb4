"""A real Prometheus for end-to-end tests: started on a free port against one target, queried over its HTTP API."""

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
    """``prometheus`` scraping ``target`` every ``interval`` seconds, with ``rule_files`` loaded when given."""

    def __init__(self, directory: Path, target: str, *, interval: str = "1s", rule_files: tuple = ()) -> None:
        self.binary = require_tool("/usr/bin/prometheus")
        self.directory = directory
        self.target = target
        self.interval = interval
        self.rule_files = rule_files
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Prometheus:
        self.port = free_port()
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "prometheus.yml"
        rules = "".join(f"\n  - {path}" for path in self.rule_files)
        config.write_text(
            f"""
global:
  scrape_interval: {self.interval}
  scrape_timeout: {self.interval}
  evaluation_interval: {self.interval}
rule_files:{rules or " []"}
scrape_configs:
  - job_name: artifact-service
    static_configs:
      - targets: ["{self.target}"]
"""
        )
        self._log = (self.directory / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.directory / "prometheus.log").read_text()
            try:
                if http(f"{self.base}/-/ready", timeout=2).status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError("prometheus did not become ready")

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self._log.close()

    def query(self, expression: str, at: float | None = None) -> list[dict]:
        params = {"query": expression}
        if at is not None:
            params["time"] = f"{at:.3f}"
        answer = http(f"{self.base}/api/v1/query?" + urllib.parse.urlencode(params))
        assert answer.status == 200, (expression, answer.body[:500])
        data = json.loads(answer.body)
        assert data["status"] == "success", data
        return data["data"]["result"]

    def value(self, expression: str, at: float | None = None) -> float | None:
        """The single value of ``expression`` (None when the result is empty)."""
        result = self.query(expression, at)
        if not result:
            return None
        assert len(result) == 1, (expression, result)
        return float(result[0]["value"][1])

    def wait_for(self, expression: str, accept, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        result: list[dict] = []
        while time.monotonic() < deadline:
            result = self.query(expression)
            if accept(result):
                return result
            time.sleep(0.5)
        pytest.fail(f"{expression} never satisfied the test within {timeout} s; last result {result}")

    def last_scrape(self) -> float:
        """Timestamp of the newest sample of ``up`` (a scrape that has happened)."""
        result = self.query('up{job="artifact-service"}')
        return float(result[0]["value"][0]) if result else 0.0

    def wait_scrapes(self, count: int) -> None:
        """Wait until ``count`` more scrapes have completed."""
        for _ in range(count):
            previous = self.scrape_time()
            deadline = time.monotonic() + 30
            while self.scrape_time() == previous and time.monotonic() < deadline:
                time.sleep(0.2)

    def scrape_time(self) -> float | None:
        result = self.query('timestamp(up{job="artifact-service"})')
        return float(result[0]["value"][1]) if result else None
