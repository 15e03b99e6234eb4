"""Random identifiers: the request-id pool and the time-ordered event ids."""

from __future__ import annotations

import os
import re
import threading
import time
import uuid

from observability_app.ids import new_id, time_ordered_id


def test_time_ordered_ids_are_uuid7_unique_and_sort_by_time():
    before = time.time_ns() // 1_000_000
    ids = [time_ordered_id() for _ in range(5000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == 5000
    for value in ids[:500]:
        parsed = uuid.UUID(value)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= int(value[:12], 16) <= after
    stamps = [int(value[:12], 16) for value in ids]
    assert stamps == sorted(stamps)


def test_the_random_part_uses_every_value_of_its_nibbles():
    """74 random bits: the nibbles around the version and variant fields take all their values over many ids."""
    ids = [time_ordered_id() for _ in range(4000)]
    assert {value[12] for value in ids} == {"7"}
    assert {value[16] for value in ids} == set("89ab")
    for position in (13, 17, 31):
        assert {value[position] for value in ids} == set("0123456789abcdef")
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids)


def test_new_ids_are_unique_hex_across_threads_and_refills():
    ids: list[str] = []

    def take() -> None:
        ids.extend(new_id() for _ in range(1500))  # several refills of the pool per thread

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(ids) == 6000 and len(set(ids)) == 6000
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in ids)


def test_a_forked_child_never_hands_out_its_parents_ids():
    new_id()  # the pool is filled in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, " ".join(new_id() for _ in range(300)).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as stream:
        child = set(stream.read().split())
    parent = {new_id() for _ in range(300)}
    assert len(child) == 300 and not child & parent
