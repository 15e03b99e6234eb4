"""How the compliance browser shows long identifiers: shortened to fit a column, whole on hover, one click to copy.

Correlation ids, request ids, subjects and actors run to 128 or 255 characters; shown whole they widen the
changelist past a laptop's screen and cut its last columns. Each is shown in a box of a fixed width that ends in an
ellipsis (CSS ``text-overflow``: the page still holds the whole value, so find-in-page and selecting it work), with
the whole value as its ``title`` (shown on hover) and a copy button beside it (``observability_app/admin.js``).

Every value came from outside: it is escaped (``format_html``), never marked safe.
"""

from __future__ import annotations

from django.utils.html import format_html
from django.utils.safestring import SafeString

#: Values up to this many characters fit their column whole: no copy button is added to them.
SHORT = 12


def short_id(value: str, *, href: str = "", kind: str = "id", what: str = "value") -> SafeString:
    """``value`` shortened to its column (full value on hover), a link when ``href`` is given, with a copy button.

    ``kind`` names the column (a CSS class ``obs-id-<kind>`` sets its width); ``what`` is read out by screen readers
    and shown on the copy button's hover ("copy the correlation id").
    """
    if not value:
        return format_html('<span class="obs-empty">{}</span>', "-")
    if href:
        text = format_html('<a class="obs-id obs-id-{}" href="{}" title="{}">{}</a>', kind, href, value, value)
    else:
        text = format_html('<span class="obs-id obs-id-{}" title="{}">{}</span>', kind, value, value)
    if len(value) <= SHORT:
        return format_html('<span class="obs-id-cell">{}</span>', text)
    return format_html(
        '<span class="obs-id-cell">{}<button type="button" class="obs-copy" data-copy="{}" title="copy the {}"'
        ' aria-label="copy the {}">copy</button></span>',
        text,
        value,
        what,
        what,
    )


def event_type_label(name: str) -> SafeString:
    """An event type with line-break opportunities after its underscores (SAFETY_DECISION_OVERTURNED wraps, not
    widens its column)."""
    parts = name.split("_")
    html = format_html("{}", parts[0])
    for part in parts[1:]:
        html = format_html("{}_<wbr>{}", html, part)
    return format_html('<span class="obs-type">{}</span>', html)
