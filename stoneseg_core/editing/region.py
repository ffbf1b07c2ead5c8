"""``Region``: a rectangle of mask pixels, what every edit reports it touched. No Qt, no torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Region:
    """A rectangle of pixels: rows ``top:bottom`` and columns ``left:right`` (ends excluded)."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def width(self) -> int:
        return max(0, self.right - self.left)

    @property
    def height(self) -> int:
        return max(0, self.bottom - self.top)

    @property
    def empty(self) -> bool:
        return self.width == 0 or self.height == 0

    @property
    def area(self) -> int:
        return self.width * self.height

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def union(self, other: Region | None) -> Region:
        if other is None or other.empty:
            return self
        if self.empty:
            return other
        return Region(
            min(self.top, other.top),
            min(self.left, other.left),
            max(self.bottom, other.bottom),
            max(self.right, other.right),
        )

    def clipped(self, height: int, width: int) -> Region:
        return Region(
            min(max(self.top, 0), height),
            min(max(self.left, 0), width),
            min(max(self.bottom, 0), height),
            min(max(self.right, 0), width),
        )

    def relative_to(self, outer: Region) -> Region:
        return Region(
            self.top - outer.top,
            self.left - outer.left,
            self.bottom - outer.top,
            self.right - outer.left,
        )

    @classmethod
    def full(cls, height: int, width: int) -> Region:
        return cls(0, 0, height, width)
