"""The grain side's actions: one source of truth for their text, keys, tips and enabled state.

The menu, the panel's buttons and the window's shortcuts all show these ``QAction``s. Like the
window's (``..actions``): a table (``GRAIN_ACTION_SPECS``), their slots (``grain_slots``) and
one factory (``create_grain_actions``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtGui import QAction, QActionGroup

from ..actions import ActionSpec, make_action


@dataclass
class GrainActions:
    """The grain side's actions; the panel's buttons show them."""

    analyse: QAction
    pool: QAction
    measure_scale: QAction
    import_scales: QAction
    folder_scale: QAction
    pick: QAction
    split: QAction
    merge: QAction
    undo_edit: QAction
    export_csv: QAction
    export_png: QAction
    cancel: QAction


# what each action says and does; ``grain_slots`` gives their slots
GRAIN_ACTION_SPECS: tuple[ActionSpec, ...] = (
    ActionSpec(
        "analyse",
        "&Analyse grains",
        ("Ctrl+G",),
        "Split this photo's mask into stones and measure them",
    ),
    ActionSpec(
        "pool",
        "&Pool folder",
        ("Ctrl+Shift+G",),
        "Measure the stones of every photo with a mask and pool the distribution",
    ),
    ActionSpec(
        "measure_scale",
        "&Measure scale bar",
        ("K",),
        "Click both ends of a scale bar (or drag along it), then type its length in mm",
        checkable=True,
        groups=("modes",),
    ),
    ActionSpec(
        "import_scales",
        "&Import scale CSV…",
        (),
        "Set the scale of many photos from a CSV with the columns image, mm_per_px",
    ),
    ActionSpec(
        "folder_scale",
        "Use this scale for the &whole folder",
        (),
        "A fixed camera: every photo without a scale of its own gets this photo's scale",
    ),
    ActionSpec(
        "pick",
        "Pic&k stones",
        ("G",),
        "Click a stone to see its measurements; Ctrl+click chooses a second one",
        checkable=True,
        groups=("modes",),
    ),
    ActionSpec(
        "split",
        "&Split stone",
        ("X",),
        "Draw a line across a stone (two clicks or a drag) to cut it in two",
        checkable=True,
        groups=("modes",),
    ),
    ActionSpec(
        "merge",
        "&Merge stones",
        ("M",),
        "Merge the two chosen stones (Ctrl+click the second) into one",
    ),
    ActionSpec(
        "undo_edit",
        "&Undo cut or merge",
        ("Ctrl+Alt+Z",),
        "Take back the last cut or merge of stones on this photo",
    ),
    ActionSpec(
        "export_csv",
        "Export &CSV…",
        (),
        "One row per stone with the options on every row, and the percentiles as JSON beside it",
    ),
    ActionSpec(
        "export_png",
        "Export plot &PNG…",
        (),
        "The distribution with its percentiles and options, as a PNG for a report",
    ),
    ActionSpec(
        "cancel",
        "Cancel pooling",
        (),
        "Stop after the photo (or, for a big mask, the window) being measured",
    ),
)


def grain_slots(side) -> dict[str, Callable[..., object]]:
    """Each action's slot on ``side`` (a ``GrainSide``); a mode's is given its checked state."""
    return {
        "analyse": side.analyse,
        "pool": side.pool,
        "measure_scale": lambda checked: side.on_mode_toggled("scale", checked),
        "import_scales": side.import_scales,
        "folder_scale": side.use_scale_for_folder,
        "pick": lambda checked: side.on_mode_toggled("pick", checked),
        "split": lambda checked: side.on_mode_toggled("split", checked),
        "merge": side.merge_selected,
        "undo_edit": side.undo_edit,
        "export_csv": side.export_csv,
        "export_png": side.export_png,
        "cancel": side.cancel_pooling,
    }


def create_grain_actions(w, side) -> tuple[GrainActions, QActionGroup]:
    """The actions of ``GRAIN_ACTION_SPECS``, their slots on ``side`` (a ``GrainSide``), and
    the group of its three modes (at most one on)."""
    slots = grain_slots(side)
    made: dict[str, QAction] = {}
    for spec in GRAIN_ACTION_SPECS:
        made[spec.name] = make_action(
            w, spec.text, slots[spec.name], spec.shortcuts, spec.tip, checkable=spec.checkable
        )
    group = QActionGroup(side)
    group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
    for spec in GRAIN_ACTION_SPECS:
        if "modes" in spec.groups:
            group.addAction(made[spec.name])
    return GrainActions(**made), group
