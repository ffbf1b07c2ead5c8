"""The state of grain analysis for one window, and the core calls that change it; no widgets.

``GrainsController`` holds the photo's ``GrainAnalysis``, the pooled folder's summary, the
chosen stones and the scale, and keeps the project's grain state (``stoneseg.json``):
the scale of each photo, the folder's scale, the user's cuts and merges. A photo whose
stones were cut or merged by hand has them saved as its per-stone labels for training
(``save_instances``: ``instances/<stem>.png``, only where they agree with the mask). What
fails raises ``StonesegError``; ``GrainSide`` shows it, wires the widgets and runs the jobs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stoneseg_core.errors import StonesegError
from stoneseg_core.grains import (
    GrainOptions,
    ImageGrains,
    distribution_of,
    included,
    intervals_of,
    percentiles_report,
    read_scale_csv,
    with_scale_and_exclusions,
)
from stoneseg_core.grains.document import GrainAnalysis, Point, describe_options
from stoneseg_core.io.geo import georeference_or_none, is_tiff
from stoneseg_core.io.project import Project
from stoneseg_core.jobs.grains_folder import GrainSummary

from .plot import CurveView

SCALES_KEY = "scale_mm_per_px"  # project.state[SCALES_KEY][photo stem] = mm per pixel
# one mm per pixel for every photo of the folder (a fixed camera); a photo's own overrides it
FOLDER_SCALE_KEY = "folder_mm_per_px"
# project.state[GRAIN_EDITS_KEY][photo stem] = {"edits": [...], "mask_sha1": ...}: the
# user's cuts and merges (grains.replay_edits), replayed whenever the photo is analysed
GRAIN_EDITS_KEY = "grain_edits"


@dataclasses.dataclass(frozen=True)
class AnalysisRequest:
    """What one analysis splits: the inputs of ``analyse_with_edits`` and where they came from."""

    path: Path
    mask: np.ndarray
    probability: np.ndarray | None
    boundary: np.ndarray | None
    source: str  # in words
    state: int | None  # the mask state split (None: a prediction)
    options: GrainOptions
    edits: list
    # the speck floor (pixels of area) of a prediction split as the model gave it; a mask,
    # accepted or painted, is the user's: every piece of it is a stone (0)
    min_stone_px: float = 0.0


class GrainsController:
    """Grain analysis state and its core calls; ``project`` says which project is open."""

    def __init__(self, project: Callable[[], Project | None]) -> None:
        self._project = project
        self.analysis: GrainAnalysis | None = None
        self.pooled: GrainSummary | None = None
        self.pooled_options: GrainOptions | None = None
        self.selected: list[int] = []
        self.scale: float | None = None  # exact; the spin box shows it rounded
        self.last_bar_mm = 10.0
        self.prediction = None  # (Path, Prediction): the latest one the model side showed
        # what became of this analysis's per-stone labels for training: (words, a warning?)
        self.instances_note: tuple[str, bool] = ("", False)
        # (key, intervals) of the curve shown last: redraws do not resample the stones again
        self._intervals_cache: tuple[int | None, dict] = (None, {})

    @property
    def project(self) -> Project | None:
        return self._project()

    # ------------------------------------------------------------------ the project's state
    def save_state(self) -> None:
        """Write the project file (atomically); raises StonesegError."""
        self.project.save_state()

    def project_scales(self) -> dict[str, float]:
        project = self.project
        table = project.state.get(SCALES_KEY, {}) if project is not None else {}
        return {str(k): float(v) for k, v in table.items() if isinstance(v, (int, float))}

    def folder_scale(self) -> float | None:
        """The folder's own mm per pixel (for photos without one of their own), or None."""
        value = self.project.state.get(FOLDER_SCALE_KEY) if self.project is not None else None
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    def scale_of(self, stem: str) -> float | None:
        """A photo's scale: its own, else the folder's."""
        return self.project_scales().get(stem, self.folder_scale())

    def scale_for_photo(self, path: Path) -> tuple[float | None, str]:
        """(mm per pixel, where it comes from) for the photo shown: its own scale, else its
        georeference's (a GeoTIFF in a projected CRS), else the folder's. The text is empty
        for a scale the user set, and says why a georeference gives none."""
        own = self.project_scales().get(path.stem)
        if own is not None:
            return own, ""
        note = ""
        georef = georeference_or_none(path) if is_tiff(path) else None
        if georef is not None:
            mm, note = georef.mm_per_px()
            if mm is not None:
                return mm, f"from the georeference ({georef.crs_name})"
            note = f"georeference: {note}"
        folder = self.folder_scale()
        if folder is not None:
            return folder, "the folder's scale" + (f"; {note}" if note else "")
        return None, note

    def set_folder_scale(self, mm_per_px: float | None) -> bool:
        """Set (None: forget) the folder's scale and save it; False without a project."""
        project = self.project
        if project is None:
            return False
        if mm_per_px is None:
            project.state.pop(FOLDER_SCALE_KEY, None)
        else:
            project.state[FOLDER_SCALE_KEY] = float(mm_per_px)
        self.save_state()
        return True

    def set_photo_scale(self, stem: str, mm_per_px: float | None) -> None:
        """Keep one photo's scale (None: forget it) with the project, and save it."""
        table = dict(self.project.state.get(SCALES_KEY, {}))
        if mm_per_px is None:
            table.pop(stem, None)
        else:
            table[stem] = mm_per_px
        self.project.state[SCALES_KEY] = table
        self.save_state()

    def import_scales(self, path: Path) -> tuple[dict[str, float], dict[str, float], list, list]:
        """Read a scale CSV: (all its scales, those naming a photo here, unknown, missing)."""
        scales = read_scale_csv(path)
        stems = {p.stem for p in self.project.image_paths()}
        matched = {k: v for k, v in scales.items() if k in stems}
        unknown = sorted(set(scales) - stems)
        missing = sorted(stems - set(scales))
        return scales, matched, unknown, missing

    def keep_scales(self, scales: dict[str, float]) -> None:
        table = dict(self.project.state.get(SCALES_KEY, {}))
        table.update(scales)
        self.project.state[SCALES_KEY] = table
        self.save_state()

    def stored_edits(self, stem: str) -> dict:
        """The cuts and merges kept with the project for this photo ({} when none)."""
        table = self.project.state.get(GRAIN_EDITS_KEY, {}) if self.project is not None else {}
        entry = table.get(stem)
        return dict(entry) if isinstance(entry, dict) else {}

    def save_edits(self, dropped: list[dict] | None = None) -> bool:
        """Keep the current photo's edits with the project; False when there is nothing to keep."""
        a, project = self.analysis, self.project
        if a is None or project is None:
            return False
        table = dict(project.state.get(GRAIN_EDITS_KEY, {}))
        entry = {
            "edits": list(a.edits),
            "mask_sha1": a.digest,
            "min_separation_px": int(a.options.min_separation_px),
        }
        old = table.get(a.image.stem, {})
        kept_aside = list(old.get("dropped", [])) + list(dropped or [])
        if kept_aside:
            entry["dropped"] = kept_aside  # edits that no longer fit: told, never erased
        if a.edits or kept_aside:
            table[a.image.stem] = entry
        else:
            table.pop(a.image.stem, None)
        project.state[GRAIN_EDITS_KEY] = table
        self.save_state()
        return True

    def save_instances(self, document) -> tuple[str, bool]:
        """Save the stones as cut and merged by hand as the photo's per-stone labels for
        training (``Project.save_instances``: ``instances/<stem>.png``, atomically), or
        remove the ones the app wrote once no cut or merge is left. Only stones that lie
        exactly where ``document``'s mask (as it is now) is stone are written; a file the
        user put there is left alone. Returns (what happened in words, whether it is a
        warning), also kept as ``instances_note``."""
        a, project = self.analysis, self.project
        note: tuple[str, bool] = ("", False)
        if a is None or project is None:
            pass
        elif not a.edits:
            try:
                if project.discard_instances(a.image):
                    note = ("No cut or merge is left: its per-stone labels were removed.", False)
            except StonesegError as exc:
                note = (str(exc), True)
        elif document is None or document.shape != a.labels.shape:
            note = ("Per-stone labels not saved: the mask is not open.", True)
        elif not np.array_equal(a.labels > 0, np.asarray(document.mask) > 0):
            why = (
                "they were split from the model's prediction, not the mask: accept it "
                "(Ctrl+Return) and analyse again"
                if a.state_id is None
                else "the mask was edited after this analysis: press Analyse (Ctrl+G)"
            )
            note = (f"Per-stone labels not saved for training: {why}.", True)
        else:
            try:
                path = project.save_instances(a.image, a.labels, document.mask)
                note = (
                    f"Cuts and merges saved for training ({path.parent.name}/{path.name}).",
                    False,
                )
            except StonesegError as exc:
                note = (f"Per-stone labels not saved for training: {exc}", True)
        self.instances_note = note
        return note

    # ------------------------------------------------------------------ analysing
    def request(self, document, path: Path, options: GrainOptions, shown) -> AnalysisRequest:
        """What to split: the prediction when one is shown (``shown`` is the model's), else the mask.

        A photo cut and merged by hand is split again at the separation of its edits.
        """
        pred = self.prediction[1] if self.prediction and self.prediction[0] == path else None
        if pred is not None and shown is pred:
            mask, probability = pred.mask.copy(), pred.probability
            source = "the model's prediction (with its probability)"
        else:
            mask = np.array(document.mask, copy=True)
            if pred is not None and np.array_equal(mask, pred.mask):
                probability = pred.probability
                source = "the accepted prediction (with its probability)"
            else:
                probability, source = None, "the mask"
        options = options.replace(use_probability=probability is not None)
        stored = self.stored_edits(path.stem)
        kept_sep = stored.get("min_separation_px")
        if (
            stored.get("edits")
            and isinstance(kept_sep, int)
            and kept_sep != options.min_separation_px
        ):
            # the hand edits were made on the split at this separation: replay them on it
            options = options.replace(min_separation_px=kept_sep)
        # a model trained with the boundary target also gives where stones meet: split on it
        boundary = None
        if probability is not None and pred is not None and probability is pred.probability:
            boundary = getattr(pred, "boundary", None)
        state = (
            None
            if probability is not None and source.startswith("the model")
            else document.state_id
        )
        floor = pred.min_stone_px if state is None and pred is not None else 0.0
        return AnalysisRequest(
            path,
            mask,
            probability,
            boundary,
            source,
            state,
            options,
            stored.get("edits", []),
            min_stone_px=floor,
        )

    def accept(
        self,
        request: AnalysisRequest,
        result,
        now: GrainOptions,
    ) -> tuple[str, str | None]:
        """Take a finished analysis (``analyse_with_edits``'s result): (the replay note, why
        the replayed edits could not be saved or None).

        ``now`` are the options shown now: when they or the scale changed while it ran, the
        stones are restated.
        """
        labels, grains, applied, failed, digest = result
        path, options = request.path, request.options
        self.analysis = GrainAnalysis(
            path,
            labels,
            list(grains.stones),
            grains.mm_per_px,
            options,
            request.source,
            request.state,
            edits=list(applied),
            digest=digest,
        )
        stored = self.stored_edits(path.stem)
        replayed, save_error = "", None
        if stored.get("edits"):
            changed = stored.get("mask_sha1") not in (None, digest)
            replayed = f"Your {len(applied)} cut(s) and merge(s) on this photo are back."
            if changed or failed:
                replayed = (
                    f"The mask changed since your {len(stored['edits'])} cut(s) and merge(s): "
                    f"{len(applied)} re-applied"
                    + (
                        f", {len(failed)} no longer fit ({'; '.join(why for _, why in failed)})"
                        if failed
                        else ""
                    )
                    + "."
                )
            if changed:
                try:
                    self.save_edits(dropped=[e for e, _ in failed])
                except StonesegError as exc:
                    save_error = str(exc)
            elif failed:
                # the same mask: the edits did not fit this split's options; keep them all
                self.analysis.edits = list(stored["edits"])
        self.analysis.replay_note = replayed
        self.selected = []
        if (
            self.scale != grains.mm_per_px
            or now.replace(
                min_separation_px=options.min_separation_px, use_probability=options.use_probability
            )
            != options
        ):  # the scale or the options changed while it ran
            if now.min_size_mm is None or self.scale is not None:
                self.analysis.restate(self.scale, now)
        return replayed, save_error

    def is_fresh(self, document) -> bool:
        """The analysis still matches the mask being edited."""
        a = self.analysis
        if a is None or document is None:
            return False
        return a.state_id is None or a.state_id == document.state_id

    def forget_analysis(self) -> None:
        self.analysis = None
        self.selected = []
        self.instances_note = ("", False)

    def restate_pooled(self, options: GrainOptions) -> None:
        """The pooled stones with each photo's scale and ``options``; raises when they no longer hold."""
        if self.pooled is None:
            return
        results = tuple(
            ImageGrains(
                r.name,
                self.scale_of(Path(r.name).stem),
                tuple(
                    with_scale_and_exclusions(
                        r.stones,
                        self.scale_of(Path(r.name).stem),
                        options.exclude_edge,
                        options.min_size_px,
                        options.min_size_mm,
                    )
                ),
            )
            for r in self.pooled.results
        )
        pooled_options = options.replace(
            min_separation_px=self.pooled_options.min_separation_px,
            use_probability=False,
        )
        # the window reads no interval of this report (the curve view has its own): none made
        report = percentiles_report(results, pooled_options, bootstrap=None)
        self.pooled = dataclasses.replace(self.pooled, results=results, report=report)
        self.pooled_options = pooled_options

    def drop_pooled(self) -> None:
        self.pooled = None
        self.pooled_options = None

    # ------------------------------------------------------------------ choosing and editing
    def picked(self, x: float, y: float, ctrl: bool) -> list[int]:
        """The stones chosen after a click at (x, y) (Ctrl adds or removes one)."""
        label = self.analysis.label_at(x, y)
        chosen = list(self.selected)
        if ctrl:
            if label in chosen:
                chosen.remove(label)
            elif label:
                chosen.append(label)
        else:
            chosen = [label] if label else []
        return chosen

    def choose(self, labels) -> list[int]:
        """Choose stones of the analysis (unknown ones are left out); returns the chosen."""
        if self.analysis is None:
            labels = []
        self.selected = [int(k) for k in labels if self.analysis.stone(int(k)) is not None]
        return self.selected

    def split(self, p0: Point, p1: Point) -> list[int]:
        return self.analysis.split(p0, p1)

    def merge_selected(self) -> tuple[int, int, int]:
        """Merge the two chosen stones: (first, second, the one kept); raises StonesegError."""
        first, second = self.selected
        return first, second, self.analysis.merge(first, second)

    def undo(self) -> list[int]:
        touched = self.analysis.undo()
        self.selected = []
        return touched

    # ------------------------------------------------------------------ pooling
    def pool_inputs(self, pairs, stems: set[str], document) -> tuple[dict, dict, dict]:
        """(scales, labels given, edits) for ``iter_grains_masks`` over ``pairs``."""
        scales = {s: self.scale_of(s) for s in stems}
        given = {}
        a = self.analysis
        if (
            a is not None
            and self.is_fresh(document)
            and a.state_id is not None
            and a.image.stem in stems
        ):
            given[a.image.stem] = a.labels.copy()  # the stones as cut and merged by hand
        edits = {
            s: self.stored_edits(s).get("edits", [])
            for s in stems
            if s not in given and self.stored_edits(s).get("edits")
        }
        return scales, given, edits

    # ------------------------------------------------------------------ the distribution
    def curve_view(self, which: str, options: GrainOptions) -> CurveView | None:
        """What the plot shows (``which``: "pooled" or "photo"); None when there is nothing."""
        if which == "pooled" and self.pooled is not None:
            results = self.pooled.results
            stones = [s for r in results for s in r.stones]
            scaled = bool(results) and all(r.mm_per_px is not None for r in results)
            n = len(results)
            title = f"Pooled: {n} photo{'s' if n != 1 else ''}"
            words = describe_options(
                self.pooled_options or options, "scale per photo" if scaled else None
            )
            unit = "mm" if scaled else "px"
        elif self.analysis is not None:
            stones = self.analysis.stones
            title = self.analysis.image.name
            words = describe_options(self.analysis.options, self.analysis.mm_per_px)
            unit = "mm" if self.analysis.mm_per_px is not None else "px"
        else:
            return None
        curve = distribution_of(stones, options.weighting, unit)
        # each D_p's bootstrap interval over the stones (a few ms for a photo's stones; about
        # 1 s by area for 100,000 pooled ones), made once for these stones and settings
        kept = included(stones)
        key = hash(
            (
                options.weighting,
                tuple(options.percentiles),
                tuple(s.size for s in kept),
                tuple(s.area for s in kept),
            )
        )
        if self._intervals_cache[0] != key:
            self._intervals_cache = (
                key,
                intervals_of(kept, options.weighting, options.percentiles),
            )
        intervals = self._intervals_cache[1]
        return CurveView(
            curve, title, len(stones), words, curve.percentiles(options.percentiles), intervals
        )

    def export_source(
        self, which: str, options: GrainOptions
    ) -> tuple[list[ImageGrains], GrainOptions, str] | None:
        """(results, options, file stem) of what the plot shows; None when there is nothing."""
        if which == "pooled" and self.pooled is not None:
            return list(self.pooled.results), self.pooled_options or options, "stones_pooled"
        if self.analysis is not None:
            return [self.analysis.result()], self.analysis.options, self.analysis.image.stem
        return None


__all__ = [
    "FOLDER_SCALE_KEY",
    "GRAIN_EDITS_KEY",
    "SCALES_KEY",
    "AnalysisRequest",
    "GrainsController",
]
