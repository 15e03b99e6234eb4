"""What verification names: one :class:`Problem` per finding, with a stable ``kind``.

Kinds: ``changed``, ``removed``, ``inserted`` (events); ``seal_forged``, ``chain_broken``, ``seals_missing``
(seals); ``purge_forged``, ``purged_under_hold``, ``hold_missing`` (purges and holds); ``checkpoint_missing``,
``checkpoint_mismatch``, ``checkpoint_forged`` (the anchor outside the database); ``verification_forged``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Problem"]


@dataclass
class Problem:
    kind: str  # changed | removed | inserted | seal_forged | chain_broken | purge_forged | purged_under_hold ...
    event_id: int | None
    detail: str

    def __str__(self) -> str:
        where = f"event {self.event_id}" if self.event_id is not None else "trail"
        return f"{self.kind}: {where}: {self.detail}"
