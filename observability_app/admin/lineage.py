"""An artifact's lineage from the audit trail: where it came from, what decided it was safe, who read it and why.

Built from the events the example bucket service (and any artifact service) records:

* PROVENANCE_CHAIN_VERIFIED: the artifact's ``upstream_refs`` (each an artifact id) and whether the chain verified;
* ARTIFACT_CREATED: each stored version, with its digests;
* SAFETY_DECISION_RECORDED / SAFETY_DECISION_OVERTURNED: the decisions and the overturns, in order;
* ARTIFACT_ACCESSED: the readers and their purposes (of the artifact asked about).

The upstream chain is walked breadth first, one query per level (``WHERE subject IN (...) AND event_type IN (...)``,
served by the subject index), at most :data:`MAX_NODES` artifacts; a reference cycle is shown, not followed twice.
The graph is SVG laid out and drawn here (:func:`render_graph`): no script, no library, nothing from elsewhere.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from django.db.models import QuerySet
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from ..audit.models import AuditEvent
from .search import storable

__all__ = [
    "ACCESSED",
    "CHAIN_TYPES",
    "CREATED",
    "DECIDED",
    "DECISION_CLASS",
    "LABEL_CHARS",
    "MAX_ACCESSES",
    "MAX_NODES",
    "MAX_REFS",
    "OVERTURNED",
    "PROVENANCE",
    "Lineage",
    "Node",
    "Reader",
    "artifact_lineage",
    "decision_rows",
    "layout",
    "render_graph",
]


PROVENANCE = "PROVENANCE_CHAIN_VERIFIED"
CREATED = "ARTIFACT_CREATED"
DECIDED = "SAFETY_DECISION_RECORDED"
OVERTURNED = "SAFETY_DECISION_OVERTURNED"
ACCESSED = "ARTIFACT_ACCESSED"
CHAIN_TYPES = (PROVENANCE, CREATED, DECIDED, OVERTURNED)
#: At most this many artifacts are drawn; a longer chain says it was cut.
MAX_NODES = 200
#: At most this many upstream references are read from one event.
MAX_REFS = 100
#: The newest accesses of the artifact that are read (readers and purposes are summed over them).
MAX_ACCESSES = 1000
_COLUMNS = ("id", "event_type", "occurred_at", "subject", "actor", "outcome", "correlation_id", "payload")


@dataclass
class Node:
    """One artifact of the chain and what the trail says about it."""

    artifact_id: str
    depth: int
    upstream: list[str] = field(default_factory=list)
    provenance: list[AuditEvent] = field(default_factory=list)
    created: list[AuditEvent] = field(default_factory=list)
    decisions: list[AuditEvent] = field(default_factory=list)  # recorded and overturned, oldest first

    @property
    def known(self) -> bool:
        return bool(self.provenance or self.created or self.decisions)

    @property
    def decision(self) -> str:
        """The decision in force: the last overturn's new decision, or the last recorded one ('' if none)."""
        for event in reversed(self.decisions):
            payload = event.payload if isinstance(event.payload, dict) else {}
            value = payload.get("new_decision") if event.event_type == OVERTURNED else payload.get("decision")
            if value:
                return str(value)
        return ""

    @property
    def overturned(self) -> bool:
        return any(event.event_type == OVERTURNED for event in self.decisions)

    @property
    def chain_result(self) -> str:
        """The last provenance check's result ('' when the chain was never checked)."""
        if not self.provenance:
            return ""
        payload = self.provenance[-1].payload
        return str(payload.get("result", "")) if isinstance(payload, dict) else ""


@dataclass
class Reader:
    reader: str
    purpose: str
    count: int
    last: dt.datetime


@dataclass
class Lineage:
    artifact_id: str
    nodes: dict[str, Node]
    edges: list[tuple[str, str, str]]  # (artifact, upstream, result of the check that named it)
    truncated: bool
    readers: list[Reader]
    accesses: list[AuditEvent]
    accesses_truncated: bool

    @property
    def root(self) -> Node | None:
        return self.nodes.get(self.artifact_id)

    def chain(self) -> list[Node]:
        """The nodes by depth (the artifact first, then its direct upstream, ...)."""
        return sorted(self.nodes.values(), key=lambda node: (node.depth, node.artifact_id))


def _refs(event: AuditEvent) -> list[str]:
    payload = event.payload if isinstance(event.payload, dict) else {}
    refs = payload.get("upstream_refs")
    if not isinstance(refs, list):
        return []
    out = []
    for ref in refs[:MAX_REFS]:
        if isinstance(ref, str) and ref.strip() and storable("subject", ref.strip()):
            out.append(ref.strip())
    return out


def artifact_lineage(queryset: QuerySet, artifact_id: str) -> Lineage:
    """The upstream chain of ``artifact_id`` and its readers, from ``queryset`` (the admin's events)."""
    artifact_id = (artifact_id or "").strip()
    if not artifact_id or not storable("subject", artifact_id):
        return Lineage(artifact_id, {}, [], False, [], [], False)
    base = queryset.order_by().only(*_COLUMNS)
    nodes: dict[str, Node] = {artifact_id: Node(artifact_id, 0)}
    edges: list[tuple[str, str, str]] = []
    level = [artifact_id]
    truncated = False
    depth = 0
    while level:
        events = base.filter(subject__in=level, event_type__in=CHAIN_TYPES).order_by("occurred_at", "id")
        for event in events:
            node = nodes.get(event.subject)
            if node is None:
                continue
            if event.event_type == PROVENANCE:
                node.provenance.append(event)
            elif event.event_type == CREATED:
                node.created.append(event)
            else:
                node.decisions.append(event)
        depth += 1
        following: list[str] = []
        for name in level:
            node = nodes[name]
            results: dict[str, str] = {}
            for event in node.provenance:  # the last check that names a reference says whether it verified
                result = str(event.payload.get("result", "")) if isinstance(event.payload, dict) else ""
                for ref in _refs(event):
                    results[ref] = result
            for ref, result in results.items():
                node.upstream.append(ref)
                edges.append((name, ref, result))
                if ref in nodes:
                    continue  # already drawn (a shared upstream, or a cycle): linked, not walked again
                if len(nodes) >= MAX_NODES:
                    truncated = True
                    continue
                nodes[ref] = Node(ref, depth)
                following.append(ref)
        level = following
    accesses = list(
        base.filter(subject=artifact_id, event_type=ACCESSED).order_by("-occurred_at", "-id")[: MAX_ACCESSES + 1]
    )
    accesses_truncated = len(accesses) > MAX_ACCESSES
    accesses = accesses[:MAX_ACCESSES]
    counts: Counter[tuple[str, str]] = Counter()
    last: dict[tuple[str, str], dt.datetime] = {}
    for event in accesses:
        payload = event.payload if isinstance(event.payload, dict) else {}
        key = (str(payload.get("reader", "")), str(payload.get("purpose", "")))
        counts[key] += 1
        last.setdefault(key, event.occurred_at)
    readers = [Reader(reader, purpose, n, last[(reader, purpose)]) for (reader, purpose), n in counts.most_common()]
    return Lineage(artifact_id, nodes, edges, truncated, readers, accesses, accesses_truncated)


# -- the picture -----------------------------------------------------------------------------------------------------

BOX_W, BOX_H, GAP_X, GAP_Y, PAD = 230, 46, 24, 34, 10
LABEL_CHARS = 30
DECISION_CLASS = {"approved": "approved", "rejected": "rejected", "quarantined": "quarantined"}


def _n(value: float) -> str:
    """A coordinate, to a tenth of a pixel."""
    return f"{value:.1f}"


def _label(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 12] + "…" + text[-11:]


def layout(lineage: Lineage) -> dict[str, tuple[float, float]]:
    """Top-left corners of the boxes: one row per depth, the deepest upstream at the top, the artifact at the bottom."""
    rows: dict[int, list[str]] = {}
    for node in lineage.chain():
        rows.setdefault(node.depth, []).append(node.artifact_id)
    widest = max((len(names) for names in rows.values()), default=1)
    width = widest * (BOX_W + GAP_X) - GAP_X
    deepest = max(rows, default=0)
    positions: dict[str, tuple[float, float]] = {}
    for depth, names in rows.items():
        row_w = len(names) * (BOX_W + GAP_X) - GAP_X
        x0 = PAD + (width - row_w) / 2
        y = PAD + (deepest - depth) * (BOX_H + GAP_Y)
        for index, name in enumerate(names):
            positions[name] = (x0 + index * (BOX_W + GAP_X), y)
    return positions


def render_graph(lineage: Lineage, node_link: Any) -> SafeString:
    """The chain as SVG. ``node_link(artifact_id)`` is the URL of that artifact's own lineage page."""
    positions = layout(lineage)
    if not positions:
        return format_html("{}", "")
    width = max(x for x, _ in positions.values()) + BOX_W + PAD
    height = max(y for _, y in positions.values()) + BOX_H + PAD
    lines = []
    for child, upstream, result in lineage.edges:
        if child not in positions or upstream not in positions:
            continue
        cx, cy = positions[child]
        ux, uy = positions[upstream]
        failed = result != "verified"
        lines.append(
            format_html(
                '<path d="M{},{} C{},{} {},{} {},{}" class="obs-edge{}"'
                ' marker-end="url(#obs-arrow)"><title>{}</title></path>',
                _n(ux + BOX_W / 2),
                _n(uy + BOX_H),
                _n(ux + BOX_W / 2),
                _n(uy + BOX_H + GAP_Y / 2),
                _n(cx + BOX_W / 2),
                _n(cy - GAP_Y / 2),
                _n(cx + BOX_W / 2),
                _n(cy - 2),
                " obs-edge-failed" if failed else "",
                f"{upstream} -> {child}: provenance {result or 'not checked'}",
            )
        )
    boxes = []
    for name, (x, y) in positions.items():
        node = lineage.nodes[name]
        decision = node.decision
        status = decision or ("no safety decision" if node.known else "not in the trail")
        if node.overturned:
            status += " (overturned)"
        if node.chain_result:
            status += f" · chain {node.chain_result}"
        css = "obs-node obs-node-" + DECISION_CLASS.get(decision, "unknown" if node.known else "missing")
        if name == lineage.artifact_id:
            css += " obs-node-root"
        boxes.append(
            format_html(
                '<a href="{}" class="obs-node-link" data-artifact="{}"><title>{}</title>'
                '<rect x="{}" y="{}" width="{}" height="{}" rx="6" class="{}"></rect>'
                '<text x="{}" y="{}" class="obs-node-name">{}</text>'
                '<text x="{}" y="{}" class="obs-node-status">{}</text></a>',
                node_link(name),
                name,
                f"{name}: {status}",
                _n(x),
                _n(y),
                BOX_W,
                BOX_H,
                css,
                _n(x + 8),
                _n(y + 19),
                _label(name),
                _n(x + 8),
                _n(y + 36),
                status,
            )
        )
    return format_html(
        '<svg class="obs-lineage-svg" viewBox="0 0 {} {}" width="{}" height="{}" role="img"'
        ' aria-label="{}"><defs><marker id="obs-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7"'
        ' markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="obs-arrow"></path>'
        "</marker></defs>{}{}</svg>",
        _n(width),
        _n(height),
        _n(width),
        _n(height),
        f"upstream chain of {lineage.artifact_id}: {len(positions)} artifacts",
        mark_safe("".join(lines)),  # each built with format_html above
        mark_safe("".join(boxes)),
    )


def decision_rows(node: Node) -> SafeString:
    """The node's decisions and overturns as table rows (oldest first)."""
    return format_html_join("", "<tr>{}</tr>", ((mark_safe(_decision_cells(event)),) for event in node.decisions))


def _decision_cells(event: AuditEvent) -> str:
    payload = event.payload if isinstance(event.payload, dict) else {}
    if event.event_type == OVERTURNED:
        what = format_html(
            "<strong>overturned</strong>: {} &rarr; {} ({})",
            payload.get("previous_decision", "?"),
            payload.get("new_decision", "?"),
            payload.get("overturn_reason", ""),
        )
    else:
        what = format_html(
            "{} by {} {} (confidence {})",
            payload.get("decision", "?"),
            payload.get("scanner", "?"),
            payload.get("scanner_version", ""),
            payload.get("confidence", "?"),
        )
    return format_html(
        "<td><time>{}</time></td><td>{}</td><td>{}</td>",
        event.occurred_at.strftime("%Y-%m-%d %H:%M:%S"),
        what,
        event.actor or "-",
    )
