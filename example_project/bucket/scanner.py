"""A deterministic example safety scanner: the same bytes always get the same decision.

Rules (enough to show every decision in the tour): content with a known test-malware marker is rejected; a pickle
that references ``os``/``subprocess``/``builtins.eval`` is quarantined; anything else is approved.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

SCANNER = "example-scanner"
SCANNER_VERSION = "1.2.0"

#: Every reason a rejection can give (the rejection metric's ``reason`` label).
REASONS = ("test-malware signature",)
_REJECT_MARKERS = (b"EICAR-STANDARD-ANTIVIRUS-TEST-FILE", b"X5O!P%@AP[4\\PZX54(P^)7CC)7}")
_PICKLE_SUSPICIOUS = (b"os\nsystem", b"subprocess", b"builtins\neval", b"posix\nsystem")


@dataclass(frozen=True)
class ScanResult:
    decision: str
    confidence: float
    reason: str


def scan(content: bytes) -> ScanResult:
    fingerprint = hashlib.sha256(content).digest()[0] / 255  # deterministic spread for confidence
    if any(marker in content for marker in _REJECT_MARKERS):
        return ScanResult("rejected", round(0.95 + 0.05 * fingerprint, 4), "test-malware signature")
    if content[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05") and any(
        marker in content for marker in _PICKLE_SUSPICIOUS
    ):
        return ScanResult("quarantined", round(0.6 + 0.3 * fingerprint, 4), "pickle references a system call")
    return ScanResult("approved", round(0.9 + 0.1 * fingerprint, 4), "no finding")
