"""Traffic for the example bucket service that fills every panel and every alert expression of docs/ at least once.

Run it against a running example (``make run``, or gunicorn), started with ``EXAMPLE_FAULT_INJECTION=1`` so that
the simulated 500s and scan retries are honoured::

    python scripts/traffic.py http://127.0.0.1:8000            # HTTP only
    python scripts/traffic.py http://127.0.0.1:8000 --commands # also purge_expired_audit and verify_audit

What it sends (docs/metrics.md, "Traffic that fills the dashboards"): uploads answered 201, 409 (the same version
again, identical and different bytes) and 400 (wrong digest); reads that hit and miss the example's cache, HEAD
requests (metadata), 404s; scans approved, rejected and quarantined, in the request and as background jobs (a thread,
and Celery when a broker is configured, some with transient failures that are retried and one that exhausts its
retries); an overturned rejection (a false positive); provenance checks verified and failed (orphans); a burst of
simulated 500s; a refused admin form post (403) and unknown paths. ``--commands`` then runs ``manage.py
purge_expired_audit`` (evaluated ten years ahead, so that expired events are purged) and ``manage.py verify_audit``
in this checkout, with the environment it was started with (same ``DATABASE_URL`` as the server).

Standard library only; exits 1 when an answer is not the one expected.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The example scanner's markers (example_project/bucket/scanner.py): rejected, quarantined.
REJECTED = b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE traffic"
QUARANTINED = b"\x80\x04 pickle os\nsystem traffic"


class Traffic:
    def __init__(self, base: str, timeout: float = 10) -> None:
        self.base = base.rstrip("/")
        self.timeout = timeout
        self.failures: list[str] = []
        self.sent = 0

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None, expect: int | None = None
    ) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                status, content = answer.status, answer.read()
        except urllib.error.HTTPError as error:
            status, content = error.code, error.read()
        self.sent += 1
        if expect is not None and status != expect:
            self.failures.append(f"{method} {path}: {status}, expected {expect}: {content[:200]!r}")
        return status, content

    def put(self, path: str, content: bytes, expect: int, digest: str | None = None, **headers: str) -> None:
        digest = digest or "sha256:" + hashlib.sha256(content).hexdigest()
        self.request("PUT", path, content, {"X-Content-Digest": digest, **headers}, expect)

    def post_json(self, path: str, data: dict, expect: int) -> dict:
        _status, content = self.request(
            "POST", path, json.dumps(data).encode(), {"Content-Type": "application/json"}, expect
        )
        try:
            return json.loads(content)
        except ValueError:
            return {}


def artifacts(traffic: Traffic, rounds: int) -> None:
    for index in range(rounds):
        bucket = f"traffic-{index % 5}"
        base = f"/api/v1/buckets/{bucket}/artifacts/model"
        body = f"weights {index}".encode() * (1 + index)
        traffic.put(f"{base}/{index}", body, 201, **{"X-Client-Id": f"uploader-{index % 3}"})
        traffic.put(f"{base}/{index}", body, 409)  # the same bytes again: an identical re-upload
        traffic.put(f"{base}/{index}", body + b"!", 409)  # different bytes: a real conflict
        traffic.put(f"{base}/bad-{index}", body, 400, digest="sha256:" + "0" * 64)  # digest mismatch
        traffic.request("GET", f"{base}/{index}", expect=200, headers={"X-Reader": "traffic", "X-Purpose": "test"})
        traffic.request("GET", f"{base}/{index}", expect=200)  # the second read hits the cache
        traffic.request("HEAD", f"{base}/{index}", expect=200)  # metadata only
        traffic.request("GET", f"{base}/absent-{index}", expect=404)
        traffic.post_json(f"{base}/{index}/scan", {}, 200)
        traffic.post_json(f"{base}/{index}/provenance", {"upstream_refs": [f"{bucket}/model@{index}"]}, 200)
        traffic.post_json(f"{base}/{index}/provenance", {"upstream_refs": [f"{bucket}/model@missing-{index}"]}, 200)


def safety(traffic: Traffic) -> None:
    base = "/api/v1/buckets/traffic-safety/artifacts"
    traffic.put(f"{base}/bad/1", REJECTED, 201)
    traffic.post_json(f"{base}/bad/1/scan", {}, 200)
    traffic.put(f"{base}/odd/1", QUARANTINED, 201)
    traffic.post_json(f"{base}/odd/1/scan", {}, 200)
    overturn = {"decision": "approved", "reason": "reviewed: test file", "reason_code": "manual_review"}
    traffic.post_json(f"{base}/bad/1/overturn", overturn, 200)  # a false positive
    for index in range(3):  # background scans: a thread job, and Celery when the server has a broker
        traffic.put(f"{base}/queued/{index}", b"queued %d" % index, 201, **{"X-Simulate-Transient-Failures": "1"})
        traffic.request("POST", f"{base}/queued/{index}/scan?async=thread", expect=202)
    traffic.put(f"{base}/doomed/1", b"doomed", 201, **{"X-Simulate-Transient-Failures": "10"})


def failures(traffic: Traffic, errors: int) -> None:
    for index in range(errors):
        traffic.put(f"/api/v1/buckets/traffic-errors/artifacts/model/{index}", b"x", 500, **{"X-Simulate-Error": "1"})
    traffic.request("GET", "/no/such/page", expect=404)
    traffic.request("POST", "/admin/login/", b"username=x&password=y", expect=403)  # no CSRF token


def commands() -> None:
    later = (datetime.now(UTC) + timedelta(days=3650)).isoformat()
    for command in (["purge_expired_audit", "--now", later], ["verify_audit"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, check=False, stdout=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="the example's address, e.g. http://127.0.0.1:8000")
    parser.add_argument("--rounds", type=int, default=12, help="upload/read/scan rounds (default 12)")
    parser.add_argument("--errors", type=int, default=20, help="simulated 500s (default 20)")
    parser.add_argument("--commands", action="store_true", help="also run purge_expired_audit and verify_audit")
    options = parser.parse_args(argv)
    traffic = Traffic(options.base)
    artifacts(traffic, options.rounds)
    safety(traffic)
    failures(traffic, options.errors)
    if options.commands:
        commands()
    for failure in traffic.failures:
        print(failure, file=sys.stderr)
    print(f"{traffic.sent} requests, {len(traffic.failures)} unexpected answers")
    return 1 if traffic.failures else 0


if __name__ == "__main__":
    sys.exit(main())
