"""The folder on disk: photos, masks, models and the state of each image.

Layouts:
- ``FOLDER/images/*`` + ``FOLDER/masks/<stem>.png`` (the training layout);
- a plain folder of photos: masks go to ``FOLDER/masks``, or, if the folder is read-only,
  to a data folder the caller names (the GUI uses the user's data directory and shows it).

Masks that a model predicted and nobody has reviewed are listed in ``stoneseg.json``; they
are shown for correction but never trained on.
"""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import zlib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .errors import DataError, StonesegError
from .imageio import (
    atomic_write_bytes,
    describe_os_error,
    list_images,
    mask_path_for,
    read_mask,
    write_mask,
)

log = logging.getLogger(__name__)

STATE_FILE = "stoneseg.json"


class ImageStatus(str, Enum):
    UNLABELLED = "unlabelled"
    LABELLED = "labelled"
    PREDICTED = "predicted"  # a model's mask, not yet reviewed
    UNREADABLE = "unreadable"


@dataclass
class Project:
    root: Path
    images_dir: Path
    data_dir: Path  # where masks, models and stoneseg.json live
    state: dict = field(default_factory=dict)

    @property
    def masks_dir(self) -> Path:
        return self.data_dir / "masks"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def state_path(self) -> Path:
        return self.data_dir / STATE_FILE

    @classmethod
    def open(cls, folder: str | Path, fallback_data_dir: str | Path | None = None) -> Project:
        """Open a project folder. ``fallback_data_dir`` is used when ``folder`` is read-only."""
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise StonesegError(f"Folder not found: {root}")
        images_dir = root / "images" if (root / "images").is_dir() else root
        data_dir = root
        if not os.access(root, os.W_OK | os.X_OK):
            if fallback_data_dir is None:
                data_dir = root  # read-only; reading works, writing will say why it cannot
            else:
                data_dir = Path(fallback_data_dir)
                data_dir.mkdir(parents=True, exist_ok=True)
                existing = root / "masks"
                if existing.is_dir() and not (data_dir / "masks").exists():
                    # start from the masks the read-only folder already has
                    shutil.copytree(existing, data_dir / "masks")
        project = cls(root=root, images_dir=images_dir, data_dir=data_dir)
        project.state = project._read_state()
        return project

    # --------------------------------------------------------------------------- state file
    def _read_state(self) -> dict:
        # The state may also sit beside a read-only folder's original masks
        for path in (self.state_path, self.root / STATE_FILE):
            if path.is_file():
                try:
                    data = json.loads(path.read_text(encoding="utf-8"))
                    if isinstance(data, dict):
                        return data
                except (OSError, ValueError) as exc:
                    log.warning("Ignoring damaged %s: %s", path, exc)
        return {}

    def save_state(self) -> None:
        try:
            atomic_write_bytes(self.state_path, json.dumps(self.state, indent=2).encode())
        except OSError as exc:
            raise StonesegError(describe_os_error(exc, self.state_path)) from exc

    # --------------------------------------------------------------------------- images
    def image_paths(self) -> list[Path]:
        return list_images(self.images_dir)

    def mask_path(self, image: Path | str) -> Path:
        return mask_path_for(image, self.masks_dir)

    def predicted_stems(self) -> set[str]:
        return set(self.state.get("predicted", []))

    def set_predicted(self, stem: str, predicted: bool) -> None:
        stems = self.predicted_stems()
        if predicted == (stem in stems):
            return
        (stems.add if predicted else stems.discard)(stem)
        self.state["predicted"] = sorted(stems)
        self.save_state()

    def status(self, image: Path | str) -> ImageStatus:
        image = Path(image)
        if not self.mask_path(image).is_file():
            return ImageStatus.UNLABELLED
        if image.stem in self.predicted_stems():
            return ImageStatus.PREDICTED
        return ImageStatus.LABELLED

    def labelled_pairs(self, include_predicted: bool = False) -> list[tuple[Path, Path]]:
        """(image, mask) pairs to train or evaluate on, in natural order."""
        predicted = self.predicted_stems()
        pairs = []
        for img in self.image_paths():
            m = self.mask_path(img)
            if m.is_file() and (include_predicted or img.stem not in predicted):
                pairs.append((img, m))
        return pairs

    @property
    def active_model(self) -> Path | None:
        rel = self.state.get("active_model")
        if not rel:
            return None
        path = (self.data_dir / rel) if not Path(rel).is_absolute() else Path(rel)
        return path if path.is_dir() else None

    def set_active_model(self, folder: Path | None) -> None:
        if folder is None:
            self.state.pop("active_model", None)
        else:
            folder = Path(folder)
            try:
                self.state["active_model"] = str(
                    folder.resolve().relative_to(self.data_dir.resolve())
                )
            except ValueError:
                self.state["active_model"] = str(folder.resolve())
        self.save_state()


def split_by_image(
    stems: list[str],
    val_fraction: float = 0.2,
    val_images: tuple[str, ...] | None = None,
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """Split source images (never augmented copies) into train and validation.

    At least one image goes to each side, so the validation figures always come from photos
    the model did not learn from.
    """
    stems = list(stems)
    if len(stems) < 2:
        raise DataError(
            f"Training needs at least two labelled images (one to learn from, one to check on); "
            f"found {len(stems)}. Paint the mask of another photo first."
        )
    if val_images:
        wanted = [Path(v).stem for v in val_images]
        missing = [v for v in wanted if v not in stems]
        if missing:
            raise DataError(
                f"Validation images not among the labelled images: {', '.join(missing)}"
            )
        val = [s for s in stems if s in set(wanted)]
        if len(val) == len(stems):
            raise DataError(
                "Every labelled image is in the validation list; none is left to train on."
            )
    else:
        n_val = min(len(stems) - 1, max(1, round(len(stems) * val_fraction)))
        shuffled = stems[:]
        random.Random(seed).shuffle(shuffled)
        val = sorted(shuffled[:n_val], key=stems.index)
    train = [s for s in stems if s not in set(val)]
    return train, val


def joins_validation(stem: str, val_fraction: float) -> bool:
    """The rule for a photo labelled after a project's first run: it joins validation when
    the CRC-32 of its name, as a fraction of 2**32, is below ``val_fraction``. A photo's side
    never depends on the other photos, so it stays put from run to run."""
    return zlib.crc32(stem.encode("utf-8")) / 2**32 < val_fraction


def split_continuing(
    stems: list[str],
    val_fraction: float,
    earlier_val: tuple[str, ...] | list[str],
    trained_before: tuple[str, ...] | list[str],
    val_images: tuple[str, ...] | None = None,
) -> tuple[list[str], list[str]]:
    """The split of a run that continues earlier ones (fine-tuning): no leak, one validation set.

    - every photo an ancestor trained on (``trained_before``) trains again and is never
      validated on: the model has seen it;
    - the earlier validation photos (``earlier_val``) stay validation photos;
    - photos new to the lineage follow ``joins_validation``; if that leaves no validation
      photo, the new photo whose name scores lowest joins.
    An explicit ``val_images`` list is taken as given, but refused if it names a photo an
    ancestor trained on.
    """
    stems = list(stems)
    seen = set(trained_before)
    if len(stems) < 2:
        split_by_image(stems)  # raises the usual "at least two" error
    if val_images:
        wanted = {Path(v).stem for v in val_images}
        leaked = sorted(wanted & seen, key=str)
        if leaked:
            raise DataError(
                "These validation photos were trained on by the model being fine-tuned (or its "
                f"ancestors), so its scores on them would not be honest: {', '.join(leaked)}"
            )
        return split_by_image(stems, val_fraction, val_images)
    keep = set(earlier_val) - seen
    new = [s for s in stems if s not in seen and s not in keep]
    val = [s for s in stems if s in keep or (s in new and joins_validation(s, val_fraction))]
    if not val and new and len(stems) > 1:
        val = [min(new, key=lambda s: zlib.crc32(s.encode("utf-8")))]
    if not val:
        raise DataError(
            "Every labelled photo was trained on by the model being fine-tuned (or its "
            "ancestors), so none is left to validate on honestly. Label a new photo, or "
            "start afresh."
        )
    train = [s for s in stems if s not in set(val)]
    if not train:
        raise DataError("Every labelled photo is a validation photo; none is left to train on.")
    return train, val


def iter_export_masks(project: Project, out_dir: str | Path, include_predicted: bool = False):
    """Copy the project's masks as 0/255 PNG into ``out_dir``; yields (index, total, name).

    Masks are re-encoded through ``write_mask`` so the exported files are always clean
    0/255 8-bit PNGs, whatever tool wrote the originals. Returns the number written.
    """
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StonesegError(describe_os_error(exc, out_dir)) from exc
    if out_dir.resolve() == project.masks_dir.resolve():
        raise StonesegError("Choose a folder other than the project's own masks folder.")
    pairs = project.labelled_pairs(include_predicted=include_predicted)
    for i, (_img, mask_path) in enumerate(pairs, start=1):
        write_mask(out_dir / mask_path.name, read_mask(mask_path))
        yield i, len(pairs), mask_path.name
    return len(pairs)
