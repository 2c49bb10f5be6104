"""Back and Forward: a history of the places a user went to.

A place is a tab, the rows selected in its tables, and the object being
inspected. Moving within one table replaces the current place (arrowing
down a table is not twenty steps back); moving to another table, another
tab, or following a link adds one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Optional, TypeVar

MAX_PLACES = 100

T = TypeVar("T")


@dataclass(frozen=True)
class Place:
    """tab: its index; selections: (table, record) for each table of the
    tab with a current row, in the tab's order; inspected: the address of
    the object in the inspector; cause: what moved last (a table, or the tab
    itself), compared to decide between replacing and adding."""

    tab: int
    selections: tuple[tuple[Any, Any], ...] = ()
    inspected: Optional[int] = None
    cause: Any = field(default=None, compare=False)


class History(Generic[T]):
    """places[index] is where the user is; Back and Forward move the index."""

    def __init__(self) -> None:
        self.places: list[T] = []
        self.index = -1

    def clear(self) -> None:
        self.places = []
        self.index = -1

    @property
    def current(self) -> Optional[T]:
        return self.places[self.index] if self.index >= 0 else None

    def add(self, place: T) -> None:
        """A new place; whatever was ahead of the current one is dropped."""
        del self.places[self.index + 1 :]
        self.places.append(place)
        if len(self.places) > MAX_PLACES:
            del self.places[0]
        self.index = len(self.places) - 1

    def replace(self, place: T) -> None:
        if self.index < 0:
            self.add(place)
        else:
            self.places[self.index] = place
            del self.places[self.index + 1 :]

    def can_go_back(self) -> bool:
        return self.index > 0

    def can_go_forward(self) -> bool:
        return self.index < len(self.places) - 1

    def back(self) -> Optional[T]:
        if not self.can_go_back():
            return None
        self.index -= 1
        return self.places[self.index]

    def forward(self) -> Optional[T]:
        if not self.can_go_forward():
            return None
        self.index += 1
        return self.places[self.index]
