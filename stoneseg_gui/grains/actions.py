"""The grain side's actions: one source of truth for their text, keys, tips and enabled state.

The menu, the panel's buttons and the window's shortcuts all show these ``QAction``s.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QAction, QActionGroup

from ..actions import make_action


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


def create_grain_actions(w, side) -> tuple[GrainActions, QActionGroup]:
    """The actions, their slots on ``side`` (a ``GrainSide``), and the group of its three modes."""
    actions = GrainActions(
        analyse=make_action(
            w,
            "&Analyse grains",
            side.analyse,
            ("Ctrl+G",),
            "Split this photo's mask into stones and measure them",
        ),
        pool=make_action(
            w,
            "&Pool folder",
            side.pool,
            ("Ctrl+Shift+G",),
            "Measure the stones of every photo with a mask and pool the distribution",
        ),
        measure_scale=make_action(
            w,
            "&Measure scale bar",
            lambda checked: side.on_mode_toggled("scale", checked),
            ("K",),
            "Click both ends of a scale bar (or drag along it), then type its length in mm",
            checkable=True,
        ),
        import_scales=make_action(
            w,
            "&Import scale CSV…",
            side.import_scales,
            (),
            "Set the scale of many photos from a CSV with the columns image, mm_per_px",
        ),
        folder_scale=make_action(
            w,
            "Use this scale for the &whole folder",
            side.use_scale_for_folder,
            (),
            "A fixed camera: every photo without a scale of its own gets this photo's scale",
        ),
        pick=make_action(
            w,
            "Pic&k stones",
            lambda checked: side.on_mode_toggled("pick", checked),
            ("G",),
            "Click a stone to see its measurements; Ctrl+click chooses a second one",
            checkable=True,
        ),
        split=make_action(
            w,
            "&Split stone",
            lambda checked: side.on_mode_toggled("split", checked),
            ("X",),
            "Draw a line across a stone (two clicks or a drag) to cut it in two",
            checkable=True,
        ),
        merge=make_action(
            w,
            "&Merge stones",
            side.merge_selected,
            ("M",),
            "Merge the two chosen stones (Ctrl+click the second) into one",
        ),
        undo_edit=make_action(
            w,
            "&Undo cut or merge",
            side.undo_edit,
            ("Ctrl+Alt+Z",),
            "Take back the last cut or merge of stones on this photo",
        ),
        export_csv=make_action(
            w,
            "Export &CSV…",
            side.export_csv,
            (),
            "One row per stone with the options on every row, and the percentiles as JSON beside it",
        ),
        export_png=make_action(
            w,
            "Export plot &PNG…",
            side.export_png,
            (),
            "The distribution with its percentiles and options, as a PNG for a report",
        ),
        cancel=make_action(
            w,
            "Cancel pooling",
            side.cancel_pooling,
            (),
            "Stop after the photo (or, for a big mask, the window) being measured",
        ),
    )
    group = QActionGroup(side)
    group.setExclusionPolicy(QActionGroup.ExclusionPolicy.ExclusiveOptional)
    for action in (actions.measure_scale, actions.pick, actions.split):
        group.addAction(action)
    return actions, group
