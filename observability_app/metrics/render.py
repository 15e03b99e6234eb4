"""The Prometheus text format (0.0.4), written fast enough for a scrape of the whole catalog in a few milliseconds.

prometheus_client's ``generate_latest`` builds a Sample tuple and a label dict per line, then validates and escapes
every label name and value again on every scrape: about 13 us per line, over 100 ms for the full bucket catalog
(64 bins x every metric). Here the label part of each line is rendered once per series and kept, and the values of
the app's own metrics are read straight from their children; a line then costs a dict look-up and a float format.

Everything else (the project's metrics on prometheus_client's default registry, process and runtime collectors,
scrape-time collectors) goes through :meth:`TextWriter.family`, the general path, which still caches label text.
The result is checked against ``generate_latest`` in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from prometheus_client.utils import floatToGoString

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"

_ESCAPE_VALUE = str.maketrans({"\\": r"\\", "\n": r"\n", '"': r"\""})
_INF = math.inf


def format_value(value: float) -> str:
    """A float the way Prometheus parses it: ``1.0``, ``2.5e-05``, ``+Inf``, ``-Inf``, ``NaN``."""
    if value != value:
        return "NaN"
    if value == _INF:
        return "+Inf"
    if value == -_INF:
        return "-Inf"
    return repr(float(value))


def label_text(pairs: Iterable[tuple[str, str]]) -> str:
    """``{a="x",b="y"}`` (empty string without labels); values escaped per the text format."""
    inner = ",".join(f'{name}="{str(value).translate(_ESCAPE_VALUE)}"' for name, value in pairs)
    return "{" + inner + "}" if inner else ""


def _help_text(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n")


class TextWriter:
    """Collects the lines of one scrape; a family name is written once (the first source wins)."""

    #: (sample name, label pairs) -> rendered "name{labels} "; shared across scrapes, bounded by the series caps.
    _prefixes: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def __init__(self, skip_prefixes: tuple[str, ...] = (), openmetrics: bool = False) -> None:
        self.out: list[str] = []
        self.seen: set[str] = set()
        self.skip_prefixes = skip_prefixes  # families left out whole (a push leaves out ``process_``)
        #: OpenMetrics 1.0 instead of text 0.0.4: counters' family names without ``_total``, ``unknown`` for
        #: ``untyped``, timestamps in seconds, ``# EOF`` at the end (and room for exemplars on bucket lines).
        self.openmetrics = openmetrics

    def header(self, name: str, documentation: str, kind: str) -> bool:
        if name in self.seen or (self.skip_prefixes and name.startswith(self.skip_prefixes)):
            return False
        self.seen.add(name)
        if self.openmetrics:
            if kind == "counter" and name.endswith("_total"):
                name = name[: -len("_total")]
            elif kind == "untyped":
                kind = "unknown"
        self.out.append(f"# HELP {name} {_help_text(documentation)}\n# TYPE {name} {kind}\n")
        return True

    @classmethod
    def prefix(cls, name: str, pairs: tuple[tuple[str, str], ...]) -> str:
        key = (name, pairs)
        text = cls._prefixes.get(key)
        if text is None:
            if len(cls._prefixes) > 200_000:  # a project creating series without end: stay bounded
                cls._prefixes.clear()
            text = cls._prefixes[key] = f"{name}{label_text(pairs)} "
        return text

    # -- general path -------------------------------------------------------------------------------------------
    def family(self, metric: Any) -> None:
        """One ``prometheus_client`` Metric family (from any collector's ``collect()``)."""
        name, kind = metric.name, metric.type
        if kind == "counter":
            title = name + "_total"
        elif kind == "info":
            title, kind = name + "_info", "gauge"
        elif kind == "stateset":
            title, kind = name, "gauge"
        elif kind == "gaugehistogram":
            title, kind = name, "histogram"
        elif kind == "unknown":
            title, kind = name, "untyped"
        else:
            title = name
        if not self.header(title, metric.documentation, kind):
            return
        out = self.out
        skip = (name + "_created", name + "_gsum", name + "_gcount")
        for sample in metric.samples:
            if sample.name in skip:
                continue
            labels = sample.labels
            pairs = tuple(labels.items()) if labels else ()
            line = self.prefix(sample.name, pairs) + format_value(sample.value)
            if sample.timestamp is not None:
                stamp = float(sample.timestamp)
                line += f" {stamp:.3f}" if self.openmetrics else f" {int(stamp * 1000):d}"
            out.append(line + "\n")

    def collector(self, collector: Any) -> None:
        for metric in collector.collect():
            self.family(metric)

    # -- fast path for prometheus_client metric objects ---------------------------------------------------------
    def wrapper(self, metric: Any) -> None:
        """A Counter, Gauge or Histogram object: values read from its children, label text cached per series."""
        try:
            kind = metric._type
            name = metric._name
            labelnames = metric._labelnames
            if kind not in ("counter", "gauge", "histogram"):
                raise AttributeError(kind)
            if labelnames:
                with metric._lock:
                    children = list(metric._metrics.items())
            else:
                children = [((), metric)]
        except AttributeError:  # another prometheus_client layout: the general path is always right
            self.collector(metric)
            return
        title = name + "_total" if kind == "counter" else name
        if not self.header(title, metric._documentation, kind):
            return
        out = self.out
        if kind == "histogram":
            bounds = [floatToGoString(bound) for bound in metric._upper_bounds]
            for values, child in children:
                pairs = tuple(zip(labelnames, values, strict=True))
                accumulated = 0.0
                for index, bucket in enumerate(child._buckets):
                    accumulated += bucket.get()
                    out.append(self.prefix(name + "_bucket", (*pairs, ("le", bounds[index]))))
                    out.append(format_value(accumulated) + "\n")
                out.append(self.prefix(name + "_count", pairs) + format_value(accumulated) + "\n")
                out.append(self.prefix(name + "_sum", pairs) + format_value(child._sum.get()) + "\n")
            return
        sample_name = title
        for values, child in children:
            pairs = tuple(zip(labelnames, values, strict=True))
            out.append(self.prefix(sample_name, pairs) + format_value(child._value.get()) + "\n")

    def raw(self, text: str) -> None:
        self.out.append(text)

    def encode(self) -> bytes:
        text = "".join(self.out)
        return (text + "# EOF\n").encode("utf-8") if self.openmetrics else text.encode("utf-8")
