"""prometheus_client's multi-process mode, for gunicorn with several workers.

With ``PROMETHEUS_MULTIPROC_DIR`` set before the first metric is created, every worker writes its values to its own
memory-mapped files in that directory and a scrape served by any worker adds them up. Three things are added here:

* :func:`mark_process_dead` (gunicorn's ``child_exit`` hook): besides prometheus_client's clean-up of live gauges,
  the dead worker's counter, histogram and summary files are folded into one ``<type>_archive.db`` file. Totals
  stay correct (a dead worker's requests still count) while the number of files, and so the scrape cost, stays
  bounded however often workers are recycled (``max_requests``).
* A lock file: folding takes it exclusively, scrapes take it shared, so a scrape never sees a worker's values
  twice (already folded and not yet removed) or not at all.
* :class:`ProcessMetricsCollector`: ``process_*`` metrics summed over the live worker processes (prometheus_client's
  own process collector only sees the process that happens to serve the scrape). ``process_cpu_seconds_total``
  also counts the workers that are gone: the gunicorn master's ``cutime``/``cstime`` (CPU of the children it has
  reaped) plus its own time, and a high-water mark shared through the directory keeps it from ever going back
  (a worker reaped between two reads of one scrape would otherwise be missed once).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import mmap
import os
import struct
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

LOCK_NAME = ".observability.lock"
_FOLDED_TYPES = ("counter", "histogram", "summary")
_INT = struct.Struct("i").unpack_from
_DOUBLE = struct.Struct("d").unpack_from


def directory() -> str | None:
    """The multi-process directory when multi-process mode is on, else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


@contextlib.contextmanager
def locked(path: str, *, exclusive: bool) -> Iterator[None]:
    with open(os.path.join(path, LOCK_NAME), "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_directory(path: str) -> None:
    """Create ``path`` and remove the files of a previous run (call once, in the gunicorn master, before forking).

    One directory per gunicorn master: two masters sharing it would wipe and mix each other's values.
    """
    os.makedirs(path, exist_ok=True)
    for name in glob.glob(os.path.join(path, "*.db")):
        os.remove(name)


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """Bookkeeping for a worker that exited: drop its live gauges, fold its totals into the archive files."""
    from prometheus_client import multiprocess
    from prometheus_client.mmap_dict import MmapedDict

    path = path or directory()
    if not path:
        return
    multiprocess.mark_process_dead(pid, path)
    with locked(path, exclusive=True):
        for kind in _FOLDED_TYPES:
            dead = os.path.join(path, f"{kind}_{pid}.db")
            if not os.path.exists(dead):
                continue
            archive = os.path.join(path, f"{kind}_archive.db")
            totals: dict[str, float] = {}
            for source in (archive, dead):
                if os.path.exists(source):
                    for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(source):
                        totals[key] = totals.get(key, 0.0) + value
            fresh = archive + ".tmp"
            with contextlib.suppress(FileNotFoundError):
                os.remove(fresh)
            target = MmapedDict(fresh)
            try:
                for key, value in totals.items():
                    target.write_value(key, value, 0.0)
            finally:
                target.close()
            os.replace(fresh, archive)
            os.remove(dead)


def live_pids(path: str) -> list[int]:
    """Pids that wrote metric files and still run (the serving process included)."""
    pids = {os.getpid()}
    for name in os.listdir(path):
        if not name.endswith(".db"):
            continue
        tail = name[:-3].rsplit("_", 1)[-1]
        if tail.isdigit():
            pids.add(int(tail))
    return sorted(pid for pid in pids if os.path.exists(f"/proc/{pid}/stat"))


class _Slot:
    """One key of the worker files (a sample of one series), parsed once per process."""

    __slots__ = ("documentation", "kind", "labels", "le", "metric", "sample", "series")

    def __init__(self, kind: str, key: str) -> None:
        metric, sample, labels, documentation = json.loads(key)
        self.kind = kind
        self.metric = metric
        self.sample = sample
        self.documentation = documentation
        le = labels.pop("le", None) if kind == "histogram" else None
        self.le = (float(le), le) if le is not None else None
        self.labels = tuple(labels.items())
        self.series = (metric, self.labels)


class _FileIndex:
    __slots__ = ("entries", "inode", "used")

    def __init__(self, inode: int) -> None:
        self.inode = inode
        self.used = 8
        self.entries: list[tuple[int, int]] = []  # (slot, offset of the value)


class MultiProcessReader:
    """Adds up the counter, histogram and summary files of every worker and writes them as text.

    The files only ever grow (a new series appends a key; values change in place), so each file is parsed once and
    afterwards read at known offsets: a scrape costs one read per file and one unpack per value, however many
    series there are. Gauge files (multi-process gauges of the project) go through prometheus_client's own merge.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.slots: list[_Slot] = []
        self.slot_of: dict[tuple[str, str], int] = {}
        self.files: dict[str, _FileIndex] = {}
        self._layout: list[tuple[str, str, str, list]] | None = None
        self._lock = threading.Lock()  # threaded workers (gthread) may serve two scrapes at once

    def _slot(self, kind: str, key: str) -> int:
        index = self.slot_of.get((kind, key))
        if index is None:
            index = len(self.slots)
            self.slots.append(_Slot(kind, key))
            self.slot_of[(kind, key)] = index
            self._layout = None
        return index

    def _read_file(self, name: str, kind: str, totals: list[float]) -> None:
        with open(name, "rb") as handle:
            inode = os.fstat(handle.fileno()).st_ino
            data = handle.read(mmap.PAGESIZE)
            used = _INT(data, 0)[0] if len(data) >= 4 else 0
            if used > len(data):
                data += handle.read(used - len(data))
        index = self.files.get(name)
        if index is None or index.inode != inode or index.used > used:
            index = self.files[name] = _FileIndex(inode)
        position = index.used
        while position < used:
            length = _INT(data, position)[0]
            if length <= 0 or position + 4 + length > used:
                break  # a writer is mid-append or the file is damaged: read the rest next time
            key = data[position + 4 : position + 4 + length].decode("utf-8")
            position += 4 + length + (8 - (length + 4) % 8)
            index.entries.append((self._slot(kind, key), position))
            position += 16
        index.used = max(index.used, position)
        if len(totals) < len(self.slots):
            totals.extend([0.0] * (len(self.slots) - len(totals)))
        for slot, offset in index.entries:
            totals[slot] += _DOUBLE(data, offset)[0]

    def _build_layout(self) -> list[tuple[str, str, str, list]]:
        """(family name, help, kind, series) in a stable order; rebuilt only when new keys appeared."""
        families: dict[str, dict[str, Any]] = {}
        for index, slot in enumerate(self.slots):
            family = families.setdefault(slot.metric, {"kind": slot.kind, "help": slot.documentation, "series": {}})
            entry = family["series"].setdefault(slot.labels, {"buckets": [], "plain": []})
            if slot.le is not None:
                entry["buckets"].append((slot.le, index))
            else:
                entry["plain"].append((slot.sample, index))
        layout = []
        for metric, family in sorted(families.items()):
            series = []
            for labels, entry in family["series"].items():
                series.append((labels, sorted(entry["buckets"]), sorted(entry["plain"])))
            kind = family["kind"]
            title = metric + "_total" if kind == "counter" else metric
            layout.append((title, family["help"], kind, series))
        return layout

    def write(self, writer: Any) -> None:
        with self._lock:
            self._write(writer)

    def _write(self, writer: Any) -> None:
        from .render import format_value

        totals: list[float] = []
        gauge_files = []
        with locked(self.path, exclusive=False):
            for name in sorted(glob.glob(os.path.join(self.path, "*.db"))):
                kind = os.path.basename(name).split("_", 1)[0]
                if kind == "gauge":
                    gauge_files.append(name)
                elif kind in _FOLDED_TYPES:
                    try:
                        self._read_file(name, kind, totals)
                    except FileNotFoundError:
                        continue
            if gauge_files:
                from prometheus_client.multiprocess import MultiProcessCollector as Base

                gauges = list(Base.merge(gauge_files, accumulate=True))
            else:
                gauges = []
        if len(totals) < len(self.slots):
            totals.extend([0.0] * (len(self.slots) - len(totals)))
        if self._layout is None:
            self._layout = self._build_layout()
        prefix = writer.prefix
        out = writer.out
        for title, documentation, kind, series in self._layout:
            if not writer.header(title, documentation, "histogram" if kind == "histogram" else kind):
                continue
            for labels, buckets, plain in series:
                if buckets:
                    metric = title
                    accumulated = 0.0
                    for (_bound, le), slot in buckets:
                        accumulated += totals[slot]
                        out.append(prefix(metric + "_bucket", (*labels, ("le", le))))
                        out.append(format_value(accumulated) + "\n")
                    out.append(prefix(metric + "_count", labels) + format_value(accumulated) + "\n")
                for sample, slot in plain:
                    out.append(prefix(sample, labels) + format_value(totals[slot]) + "\n")
        for metric in gauges:
            writer.family(metric)


_readers: dict[str, MultiProcessReader] = {}


def reader(path: str) -> MultiProcessReader:
    """The reader of ``path``, kept across scrapes (its parsed keys and file offsets are the point)."""
    found = _readers.get(path)
    if found is None:
        found = _readers[path] = MultiProcessReader(path)
    return found


class ProcessMetricsCollector:
    """``process_*`` summed over the live processes of the multi-process directory (Linux /proc)."""

    def __init__(self, path: str) -> None:
        self._path = path
        try:
            self._ticks = float(os.sysconf("SC_CLK_TCK"))
        except (ValueError, OSError):
            self._ticks = 100.0
        self._page = float(os.sysconf("SC_PAGE_SIZE")) if hasattr(os, "sysconf") else 4096.0
        self._boot = _boot_time()

    def _master(self) -> int | None:
        """The gunicorn master (our parent) when there is one: its reaped children are our dead workers."""
        parent = os.getppid()
        if parent <= 1:
            return None
        try:
            with open(f"/proc/{parent}/cmdline", "rb") as handle:
                command = handle.read()
        except OSError:
            return None
        return parent if b"gunicorn" in command else None

    def _gone_cpu(self, master: int | None) -> float:
        """CPU seconds of the master itself and of every worker it has reaped."""
        if master is None:
            return 0.0
        try:
            with open(f"/proc/{master}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[-1].split()
        except OSError:
            return 0.0
        return sum(float(fields[index]) for index in (11, 12, 13, 14)) / self._ticks

    def _monotonic_cpu(self, value: float) -> float:
        """``value``, or the highest value any scrape of this directory reported, whichever is higher."""
        name = os.path.join(self._path, "process_cpu_high_water")
        try:
            with open(os.path.join(self._path, ".process.lock"), "a+b") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    try:
                        with open(name, "rb") as handle:
                            seen = _DOUBLE(handle.read(8), 0)[0]
                    except (OSError, struct.error):
                        seen = 0.0
                    if value > seen:
                        with open(name + ".tmp", "wb") as handle:
                            handle.write(struct.pack("d", value))
                        os.replace(name + ".tmp", name)
                        return value
                    return seen
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
        except OSError:
            return value

    def collect(self) -> Iterator[Metric]:
        cpu = rss = vms = threads = fds = max_fds = 0.0
        start: float | None = None
        processes = 0
        master = self._master()
        # Master first, then the workers: a worker reaped in between is missed once (the high-water mark covers
        # it), never counted twice.
        cpu = self._gone_cpu(master)
        for pid in live_pids(self._path):
            if pid == master:
                continue
            try:
                with open(f"/proc/{pid}/stat", "rb") as handle:
                    fields = handle.read().rsplit(b")", 1)[-1].split()
                process_fds = len(os.listdir(f"/proc/{pid}/fd"))
                process_max = _max_fds(pid)
            except OSError:  # exited meanwhile, or not ours to read
                continue
            processes += 1
            cpu += (float(fields[11]) + float(fields[12])) / self._ticks
            threads += float(fields[17])
            vms += float(fields[20])
            rss += float(fields[21]) * self._page
            fds += process_fds
            max_fds += process_max
            began = self._boot + float(fields[19]) / self._ticks
            start = began if start is None else min(start, began)
        yield CounterMetricFamily(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds (live workers, the workers that exited, the master).",
            self._monotonic_cpu(cpu),
        )
        yield GaugeMetricFamily(
            "process_resident_memory_bytes", "Resident memory size in bytes (sum over live workers).", rss
        )
        yield GaugeMetricFamily(
            "process_virtual_memory_bytes", "Virtual memory size in bytes (sum over live workers).", vms
        )
        yield GaugeMetricFamily("process_open_fds", "Number of open file descriptors (sum over live workers).", fds)
        yield GaugeMetricFamily("process_max_fds", "Maximum number of open file descriptors (sum).", max_fds)
        yield GaugeMetricFamily("process_threads", "Number of OS threads (sum over live workers).", threads)
        yield GaugeMetricFamily("process_workers", "Live processes whose metrics this scrape adds up.", processes)
        if start is not None:
            yield GaugeMetricFamily(
                "process_start_time_seconds", "Start time of the oldest live worker since unix epoch.", start
            )


def _boot_time() -> float:
    try:
        with open("/proc/stat", "rb") as handle:
            for line in handle:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def _max_fds(pid: int) -> float:
    with open(f"/proc/{pid}/limits", "rb") as handle:
        for line in handle:
            if line.startswith(b"Max open files"):
                value = line.split()[3]
                return float(value) if value.isdigit() else 0.0
    return 0.0


def threads_of_this_process() -> float:
    """``num_threads`` of /proc/self/stat (0 where /proc does not exist)."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            return float(handle.read().rsplit(b")", 1)[-1].split()[17])
    except (OSError, IndexError, ValueError):
        return 0.0
