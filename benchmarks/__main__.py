"""``python -m benchmarks`` (``make bench``): every benchmark in turn, each in its own process.

Each module prints its figures, its same-run baseline and whether its targets were met; see docs/performance.md.
"""

from __future__ import annotations

import subprocess
import sys

MODULES = ("audit", "middleware", "metrics", "retention", "admin", "jobs")


def main() -> int:
    failed = []
    for name in MODULES:
        print(f"\n=== benchmarks.{name}", flush=True)
        if subprocess.call([sys.executable, "-m", f"benchmarks.{name}"]) != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed to run: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
