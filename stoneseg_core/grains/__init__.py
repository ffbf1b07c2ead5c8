"""Grain analysis: split a stone mask into single stones, measure them, and summarise sizes.

The way the data travels: a 0/255 mask (and, when there is one, the model's probability)
-> ``split_stones`` (watershed on the distance transform) -> an int32 label image, 0 =
background -> ``measure_stones`` (scikit-image ``regionprops``) -> one frozen ``Stone`` per
label -> ``grain_size_distribution`` / ``percentiles`` (D10 ... D90, in mm and psi) ->
CSV and JSON exports. ``iter_grains_folder`` runs the whole chain over a folder as a
generator, for the ``stoneseg grains`` command and for the desktop app.

Conventions, stated once:

- The grain size of a stone is its **b-axis**: the minor axis (full length, not the
  semi-axis) of the ellipse with the same second moments as the stone. It is the
  geologist's standard intermediate axis as seen from above.
- psi = log2(size in mm) (Krumbein's phi is -psi). A psi *difference* does not depend on
  the scale, so errors in psi can be computed in pixels.
- D_p (``percentiles``): the cumulative curve passes through the points (size_k, fraction of
  all stones -- or of the total area -- whose size is <= size_k); D_p is read off that curve
  by linear interpolation, and is the smallest size when p lies below the first point.
  So for 100 stones of sizes 1, 2, ..., 100 by count, D_p = p exactly.
- The confidence interval of D_p (``percentile_intervals``, ``Bootstrap``): the percentile
  bootstrap over stones -- the stones resampled with replacement (1000 times, a fixed
  seed), D_p read off each resample's curve as above, by count or by area, and the 2.5th
  and 97.5th percentiles of those values taken (for 95 %). Reports put it beside each D_p
  (``"D50_mm_ci95": [low, high]``); in psi it is log2 of the interval in mm.

The modules, each one step of that chain: ``split`` (mask -> labels), ``measure`` (labels
-> stones), ``distribution`` (curves and percentiles), ``scale`` (mm per pixel), ``edit``
(cutting and merging stones by hand, and replaying those edits), ``instances`` (checks
against instance ground truth), ``analyse`` (options and one photo's chain), ``io``
(instance PNGs, CSV and JSON exports), ``document`` (one photo's analysis as the window
edits it: cuts and merges with undo) and ``tiled`` (masks too big for memory, window by
window). Everything public is importable from here, and none of it imports torch; the
folder jobs that segment and measure live in ``stoneseg_core.jobs.grains_folder``.
"""

from __future__ import annotations

from stoneseg_core.grains.analyse import GrainOptions, ImageGrains, analyse_mask
from stoneseg_core.grains.distribution import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_PERCENTILES,
    WEIGHTINGS,
    Bootstrap,
    GrainSizeCurve,
    Weighting,
    bootstrap_percentiles,
    distribution_of,
    grain_size_distribution,
    included,
    intervals_of,
    percentile_intervals,
    percentiles,
    psi,
)
from stoneseg_core.grains.edit import (
    apply_edit,
    cut_label,
    label_on_line,
    merge_labels,
    replay_edits,
    stone_point,
)
from stoneseg_core.grains.instances import (
    InstanceEvaluation,
    InstanceScores,
    d50_psi_error,
    evaluate_instances,
    evaluate_instances_detailed,
    match_instances,
    pool_instance_evaluations,
)
from stoneseg_core.grains.io import (
    CSV_COLUMNS,
    MAX_INSTANCES_PNG,
    percentiles_report,
    read_instance_labels,
    stones_csv,
    stones_geojson,
    write_instance_labels,
    write_instance_png,
    write_json,
    write_text,
)
from stoneseg_core.grains.measure import Stone, measure_stones, with_scale_and_exclusions
from stoneseg_core.grains.scale import line_length_px, mm_per_px_from_line, read_scale_csv
from stoneseg_core.grains.split import split_stones

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_PERCENTILES",
    "Bootstrap",
    "GrainOptions",
    "GrainSizeCurve",
    "ImageGrains",
    "InstanceEvaluation",
    "InstanceScores",
    "Stone",
    "WEIGHTINGS",
    "Weighting",
    "MAX_INSTANCES_PNG",
    "analyse_mask",
    "apply_edit",
    "bootstrap_percentiles",
    "cut_label",
    "d50_psi_error",
    "distribution_of",
    "evaluate_instances",
    "evaluate_instances_detailed",
    "grain_size_distribution",
    "included",
    "intervals_of",
    "label_on_line",
    "line_length_px",
    "match_instances",
    "measure_stones",
    "merge_labels",
    "mm_per_px_from_line",
    "percentile_intervals",
    "percentiles",
    "percentiles_report",
    "pool_instance_evaluations",
    "psi",
    "read_instance_labels",
    "read_scale_csv",
    "replay_edits",
    "split_stones",
    "stone_point",
    "stones_csv",
    "stones_geojson",
    "with_scale_and_exclusions",
    "write_instance_labels",
    "write_instance_png",
    "write_json",
    "write_text",
]
