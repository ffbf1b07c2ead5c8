"""What an import or an export did, one line per thing: each photo imported or exported (with
its stones), each thing skipped and why, each note (a stone clipped to its photo, a layer
reprojected). The window shows it in a dialog, ``stoneseg import`` and ``stoneseg export``
print it, and ``to_dict`` is its JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DONE, SKIPPED, NOTE = "done", "skipped", "note"

# why a photo was skipped when its files exist: the window asks about these, then imports
# them again with overwrite
EXISTS = "exists"


@dataclass(frozen=True)
class ReportLine:
    """One line: ``kind`` (done, skipped or note), what it is about (a photo, an annotation,
    a file) and what happened, in words. ``reason`` is a short code for skips a caller acts on
    (``EXISTS``), else empty."""

    kind: str
    what: str
    text: str
    reason: str = ""

    def __str__(self) -> str:
        mark = {DONE: "", SKIPPED: "skipped: ", NOTE: "note: "}[self.kind]
        return f"{self.what}: {mark}{self.text}" if self.what else f"{mark}{self.text}"


@dataclass(frozen=True)
class FormatProgress:
    """A step of a long import or export: ``done`` of ``total`` (photos, or annotations of a
    big file), ``what`` in words."""

    done: int
    total: int
    what: str = ""


@dataclass
class FormatReport:
    """The lines of one import or export, in order, and the photos it wrote or read."""

    action: str  # "import" or "export"
    fmt: str
    source: str
    target: str
    lines: list[ReportLine] = field(default_factory=list)
    photos: dict[str, int] = field(default_factory=dict)  # photo name -> its stones
    seconds: float = 0.0

    def done(self, photo: str, stones: int, text: str) -> None:
        self.photos[photo] = stones
        self.lines.append(ReportLine(DONE, photo, text))

    def skip(self, what: str, text: str, reason: str = "") -> None:
        self.lines.append(ReportLine(SKIPPED, what, text, reason))

    def note(self, what: str, text: str) -> None:
        self.lines.append(ReportLine(NOTE, what, text))

    def of_kind(self, kind: str) -> list[ReportLine]:
        return [line for line in self.lines if line.kind == kind]

    @property
    def skipped(self) -> list[ReportLine]:
        return self.of_kind(SKIPPED)

    @property
    def notes(self) -> list[ReportLine]:
        return self.of_kind(NOTE)

    @property
    def stones(self) -> int:
        return sum(self.photos.values())

    def existing(self) -> list[str]:
        """The photos skipped because their files exist (to import again with overwrite)."""
        return [line.what for line in self.skipped if line.reason == EXISTS]

    def summary(self) -> str:
        verb = "Imported" if self.action == "import" else "Exported"
        where = (
            f"from {self.source} into {self.target}"
            if self.action == "import"
            else (f"from {self.source} to {self.target}")
        )
        text = f"{verb} {len(self.photos)} photo(s), {self.stones} stone(s), as {self.fmt} {where}"
        extra = []
        if self.skipped:
            extra.append(f"{len(self.skipped)} skipped")
        if self.notes:
            extra.append(f"{len(self.notes)} note(s)")
        return text + (f"; {', '.join(extra)}." if extra else ".")

    def text(self) -> str:
        """The summary, then every line."""
        return "\n".join([self.summary(), *(str(line) for line in self.lines)])

    def merge(self, other: FormatReport) -> None:
        """Add a second pass's photos and lines (the same source, with overwrite): the
        photos it imported are no longer skipped for being in the way."""
        self.lines = [
            line for line in self.lines if not (line.reason == EXISTS and line.what in other.photos)
        ]
        self.photos.update(other.photos)
        self.lines.extend(other.lines)
        self.seconds += other.seconds

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "format": self.fmt,
            "source": self.source,
            "target": self.target,
            "photos": dict(self.photos),
            "stones": self.stones,
            "seconds": round(self.seconds, 3),
            "lines": [
                {"kind": line.kind, "what": line.what, "text": line.text, "reason": line.reason}
                for line in self.lines
            ],
        }
