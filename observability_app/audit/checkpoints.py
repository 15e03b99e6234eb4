"""Checkpoints: each seal's head, kept outside the database, so that a database-level attacker is found out.

In the spirit of CloudTrail's digest files and Certificate Transparency's signed tree heads: after every seal
commits, its checkpoint (seal id, last event id, chained digest, time, and an HMAC of those with the signing key)
is appended to every configured :class:`CheckpointSink`:

- :class:`FileSink` for ``OBSERVABILITY["AUDIT_CHECKPOINT_FILE"]``: one JSON line per seal, opened ``O_APPEND``,
  written in one ``write()`` and ``fsync``'d. ``verify_audit`` reads its last line back and checks that the
  database's chain still holds that seal and extends it. Put it where the database's users cannot write (another
  host's mount, a WORM bucket synced from it, a file only the sealing job's user may append to).
- :class:`LoggerSink`, always: the ``observability_app.audit.integrity`` logger, so the log pipeline keeps a copy.
- Any class named in ``OBSERVABILITY["AUDIT_CHECKPOINT_SINKS"]`` (dotted paths): for example an object store
  with a retention lock. A sink only has to implement :meth:`CheckpointSink.append`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from django.utils.module_loading import import_string

from .canonical import format_time, mac_hex

logger = logging.getLogger("observability_app.audit.integrity")

__all__ = ["Checkpoint", "CheckpointSink", "FileSink", "LoggerSink", "checkpoint_of", "reference_file", "sinks"]


@dataclass(frozen=True)
class Checkpoint:
    seal_id: int
    last_id: int
    digest: str
    created_at: str
    mac: str

    @staticmethod
    def compute_mac(seal_id: int, last_id: int, digest: str, created_at: str, key: bytes | None) -> str:
        return mac_hex(f"checkpoint/v1|{seal_id}|{last_id}|{digest}|{created_at}".encode(), key)

    def valid(self, key: bytes | None) -> bool:
        expected = self.compute_mac(self.seal_id, self.last_id, self.digest, self.created_at, key)
        return expected == self.mac

    def line(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def parse(cls, line: str) -> Checkpoint:
        """A checkpoint from one line of the file; ValueError names what is wrong."""
        try:
            data = json.loads(line)
        except ValueError:
            raise ValueError("not JSON") from None
        if not isinstance(data, dict) or set(data) != {"seal_id", "last_id", "digest", "created_at", "mac"}:
            raise ValueError("not a checkpoint object")
        if not all(type(data[name]) is int for name in ("seal_id", "last_id")) or not all(
            isinstance(data[name], str) for name in ("digest", "created_at", "mac")
        ):
            raise ValueError("a field has the wrong type")
        return cls(**data)


def checkpoint_of(seal: Any, key: bytes | None) -> Checkpoint:
    created = format_time(seal.created_at)
    mac = Checkpoint.compute_mac(seal.pk, seal.last_id, seal.digest, created, key)
    return Checkpoint(seal.pk, seal.last_id, seal.digest, created, mac)


class CheckpointSink:
    """Where checkpoints go. ``append`` must not return before the checkpoint is durable."""

    def append(self, checkpoint: Checkpoint) -> None:
        raise NotImplementedError


class LoggerSink(CheckpointSink):
    def append(self, checkpoint: Checkpoint) -> None:
        logger.info(
            "audit seal %s",
            checkpoint.seal_id,
            extra={
                "seal_id": checkpoint.seal_id,
                "seal_digest": checkpoint.digest,
                "last_id": checkpoint.last_id,
                "checkpoint_mac": checkpoint.mac,
            },
        )


class FileSink(CheckpointSink):
    """An append-only file of checkpoints, one JSON line each."""

    def __init__(self, path: str) -> None:
        self.path = path

    def append(self, checkpoint: Checkpoint) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            data = checkpoint.line().encode()
            if os.write(fd, data) != len(data):
                raise OSError(f"short write to the checkpoint file {self.path}")
            os.fsync(fd)
        finally:
            os.close(fd)

    def lines(self) -> Iterator[tuple[int, str, bool]]:
        """(line number, text, ends with a newline) of every line; nothing when the file does not exist."""
        if not os.path.exists(self.path):
            return
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for number, text in enumerate(handle, start=1):
                yield number, text.rstrip("\n"), text.endswith("\n")

    def latest(self) -> tuple[Checkpoint | None, list[str]]:
        """The last checkpoint in the file and the problems met reading it (a torn last line is skipped)."""
        last: Checkpoint | None = None
        problems: list[str] = []
        for number, text, complete in self.lines():
            if not text.strip():
                continue
            try:
                last = Checkpoint.parse(text)
            except ValueError as exc:
                if complete:
                    problems.append(f"line {number} of {self.path} is not a checkpoint ({exc})")
        return last, problems


def reference_file() -> FileSink | None:
    """The checkpoint file that verification reads, when one is configured."""
    from ..conf import settings

    path = settings.AUDIT_CHECKPOINT_FILE
    return FileSink(str(path)) if path else None


def sinks() -> list[CheckpointSink]:
    from ..conf import settings

    out: list[CheckpointSink] = []
    file_sink = reference_file()
    if file_sink is not None:
        out.append(file_sink)
    out.append(LoggerSink())
    for path in settings.AUDIT_CHECKPOINT_SINKS:
        out.append(import_string(path)())
    return out
