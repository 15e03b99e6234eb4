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
  also keeps the CPU time of the workers that are gone (``process_cpu.json``): every scrape records what it read
  per worker, and folding a dead worker moves its share into an archived total, at least what was last seen and,
  in the gunicorn master that reaped it, its exact final CPU time (``RUSAGE_CHILDREN``). The counter never goes
  back when a worker is recycled, reloaded or killed; a worker killed outright loses at most the CPU it used since
  the last scrape, and only when the folding process is not its parent.
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
CPU_STATE_NAME = "process_cpu.json"
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
    for name in [*glob.glob(os.path.join(path, "*.db")), os.path.join(path, CPU_STATE_NAME)]:
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)
    _reaped_cpu["seen"] = _children_cpu()


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """Bookkeeping for a worker that exited: drop its live gauges, fold its totals into the archive files.

    Called by gunicorn's ``child_exit`` in the master (after the worker was reaped), or by a process about to exit
    with its own pid (Celery's prefork children). SIGCHLD is held meanwhile, so that a gunicorn that reaps from its
    signal handler cannot fold twice at once (the lock is per open file: it would wait for itself).
    """
    from prometheus_client import multiprocess

    path = path or directory()
    if not path:
        return
    multiprocess.mark_process_dead(pid, path)
    held = _hold_sigchld()
    try:
        with locked(path, exclusive=True):
            for kind in _FOLDED_TYPES:
                _fold_file(path, kind, pid)
            _fold_cpu(path, pid)
    finally:
        _release_sigchld(held)


def _fold_file(path: str, kind: str, pid: int) -> None:
    from prometheus_client.mmap_dict import MmapedDict

    dead = os.path.join(path, f"{kind}_{pid}.db")
    if not os.path.exists(dead):
        return
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


# -- process CPU time of workers that are gone ------------------------------------------------------------------------

#: CPU seconds of the children this process had reaped at its last fold (gunicorn master only).
_reaped_cpu: dict[str, float] = {}


def _children_cpu() -> float:
    """User + system CPU seconds of every child this process has reaped (and their reaped descendants)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _hold_sigchld() -> bool:
    import signal

    try:
        return signal.SIGCHLD not in signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    except (AttributeError, OSError, ValueError):
        return False


def _release_sigchld(held: bool) -> None:
    import signal

    if held:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})


def _read_cpu_state(path: str) -> dict[str, Any]:
    try:
        with open(os.path.join(path, CPU_STATE_NAME), "rb") as handle:
            state = json.loads(handle.read() or b"{}")
    except (FileNotFoundError, ValueError):
        state = {}
    archived = state.get("archived", 0.0)
    seen = state.get("seen", {})
    if not isinstance(archived, (int, float)) or not isinstance(seen, dict):
        archived, seen = 0.0, {}
    return {"archived": float(archived), "seen": {str(key): float(value) for key, value in seen.items()}}


def _write_cpu_state(path: str, state: dict[str, Any]) -> None:
    target = os.path.join(path, CPU_STATE_NAME)
    fresh = f"{target}.{os.getpid()}.tmp"
    with open(fresh, "w") as handle:
        json.dump(state, handle)
    os.replace(fresh, target)


def _fold_cpu(path: str, pid: int) -> None:
    """Move the CPU time of ``pid`` and of every recorded worker that no longer exists into the archived total.

    The archived total grows by at least what the scrapes last saw of them, so the sum a scrape reports cannot go
    down. In the process that reaped them it grows by their exact final CPU time instead: RUSAGE_CHILDREN rose by
    that much since the previous fold.
    """
    state = _read_cpu_state(path)
    seen = state["seen"]
    gone = [key for key in seen if key != str(pid) and not os.path.exists(f"/proc/{key}")]
    last_seen = sum(seen.pop(key) for key in gone)
    if pid == os.getpid():  # a process folding itself on its way out: its own CPU time, now
        times = os.times()
        final = max(seen.pop(str(pid), 0.0), times.user + times.system + times.children_user + times.children_system)
        state["archived"] += final + last_seen
    else:
        last_seen += seen.pop(str(pid), 0.0)
        if os.path.exists(f"/proc/{pid}"):  # not reaped yet (a zombie still shows its final times)
            last_seen = max(last_seen, _cpu_of(pid) or 0.0)
        reaped = _children_cpu()
        exact = reaped - _reaped_cpu.get("seen", reaped)
        _reaped_cpu["seen"] = reaped
        state["archived"] += max(last_seen, exact)
    _write_cpu_state(path, state)


def _cpu_of(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[-1].split()
    except OSError:
        return None
    return sum(float(value) for value in fields[11:15]) / _TICKS


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[-1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def _ticks() -> float:
    try:
        return float(os.sysconf("SC_CLK_TCK"))
    except (ValueError, OSError, AttributeError):
        return 100.0


_TICKS = _ticks()


def live_pids(path: str) -> list[int]:
    """Pids that wrote metric files and still run (the serving process included).

    Only this process, its parent and their children count (the gunicorn master and its workers, a Celery worker
    and its pool): a stale file whose pid was reused by an unrelated process adds nothing.
    """
    me, parent = os.getpid(), os.getppid()
    pids = {me}
    for name in os.listdir(path):
        if not name.endswith(".db"):
            continue
        tail = name[:-3].rsplit("_", 1)[-1]
        if tail.isdigit():
            pids.add(int(tail))
    family = {me, parent}
    return sorted(pid for pid in pids if pid in family or _parent_of(pid) in family)


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
            names = sorted(glob.glob(os.path.join(self.path, "*.db")))
            for gone in self.files.keys() - set(names):  # folded workers: their parsed offsets are not needed
                del self.files[gone]
            for name in names:
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
    """``process_*`` summed over the live processes of the multi-process directory (Linux /proc).

    ``process_cpu_seconds_total`` adds the archived CPU time of the workers that are gone (see the module's
    docstring); the per-worker values read here are recorded under the directory's lock first, so a worker that
    dies right after this scrape is folded with at least what this scrape reported.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        self._page = float(os.sysconf("SC_PAGE_SIZE")) if hasattr(os, "sysconf") else 4096.0
        self._boot = _boot_time()

    def collect(self) -> Iterator[Metric]:
        rss = vms = threads = fds = max_fds = 0.0
        start: float | None = None
        processes = 0
        with locked(self._path, exclusive=True):
            state = _read_cpu_state(self._path)
            seen = state["seen"]
            for pid in live_pids(self._path):
                try:
                    with open(f"/proc/{pid}/stat", "rb") as handle:
                        fields = handle.read().rsplit(b")", 1)[-1].split()
                    process_fds = len(os.listdir(f"/proc/{pid}/fd"))
                    process_max = _max_fds(pid)
                except OSError:  # exited meanwhile, or not ours to read
                    continue
                processes += 1
                cpu = sum(float(value) for value in fields[11:15]) / _TICKS
                seen[str(pid)] = max(seen.get(str(pid), 0.0), cpu)
                threads += float(fields[17])
                vms += float(fields[20])
                rss += float(fields[21]) * self._page
                fds += process_fds
                max_fds += process_max
                began = self._boot + float(fields[19]) / _TICKS
                start = began if start is None else min(start, began)
            _write_cpu_state(self._path, state)
        cpu_total = state["archived"] + sum(seen.values())
        yield CounterMetricFamily(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds (live workers and the workers that are gone).",
            cpu_total,
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
