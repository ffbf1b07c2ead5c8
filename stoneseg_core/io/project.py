"""The folder on disk: photos, masks, per-stone labels, models and the state of each image.

Layouts:
- ``FOLDER/images/*`` + ``FOLDER/masks/<stem>.png`` (the training layout), optionally
  ``FOLDER/instances/<stem>.png``: a photo's per-stone labels (16-bit PNG, 0 = ground, one
  id per stone) for the boundary target and the speck floor;
- a plain folder of photos: masks go to ``FOLDER/masks``, or, if the folder is read-only,
  to a data folder the caller names (the GUI uses the user's data directory and shows it).

Masks that a model predicted and nobody has reviewed are listed in ``stoneseg.json``; they
are shown for correction but never trained on.

Per-stone labels come from the user (any tool) or from the app: the Grains panel's cuts and
merges are saved as ``instances/<stem>.png`` (``save_instances``), and ``stoneseg.json``
records the SHA-256 of each file the app wrote. Only such a file is ever replaced or removed
by the app; one the user put there is never touched. ``training_pairs`` gives the pairs
with their labels: an app-written file whose mask was edited since, so that it no longer
fits, is left out of training (named in a note; analysing the photo again in the Grains
panel replays the cuts and merges and writes it afresh), while a user's file that does not
fit stops training with every bad file named (``dataset.load_samples``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import random
import shutil
import zlib
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import cv2
import numpy as np

from stoneseg_core.errors import DataError, StonesegError
from stoneseg_core.io.images import (
    atomic_write_bytes,
    describe_os_error,
    file_sha256,
    instances_disagreement,
    list_images,
    mask_path_for,
    read_instance_labels,
    read_mask,
    write_mask,
)
from stoneseg_core.io.project_state import merge_state

log = logging.getLogger(__name__)

STATE_FILE = "stoneseg.json"
INSTANCES_DIR = "instances"
# project.state[INSTANCES_KEY][photo stem] = SHA-256 of the instances/<stem>.png the app wrote
INSTANCES_KEY = "instances_written"
MAX_INSTANCE_ID = 65535  # a 16-bit PNG


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
    # the state as last read from or written to disk: what ``save_state`` merges against
    _base: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def masks_dir(self) -> Path:
        return self.data_dir / "masks"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def instances_dir(self) -> Path:
        """Per-stone labels: ``instances/<stem>.png`` beside ``masks/``."""
        return self.data_dir / INSTANCES_DIR

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
                for sub in ("masks", INSTANCES_DIR):
                    existing = root / sub
                    if existing.is_dir() and not (data_dir / sub).exists():
                        # start from the masks (and labels) the read-only folder already has
                        shutil.copytree(existing, data_dir / sub)
        project = cls(root=root, images_dir=images_dir, data_dir=data_dir)
        project.state = project._read_state()
        project._base = copy.deepcopy(project.state)
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
        """Write the state, merged with what another window or program wrote to the file
        since this one read it (``merge_state``): their changes to other keys, other photos'
        entries and other predicted photos are kept, ours win where both changed the same."""
        try:
            theirs = self._read_state_file()
            merged = merge_state(self._base, self.state, theirs)
            atomic_write_bytes(self.state_path, json.dumps(merged, indent=2).encode())
        except OSError as exc:
            raise StonesegError(describe_os_error(exc, self.state_path)) from exc
        self.state.clear()
        self.state.update(merged)
        self._base = copy.deepcopy(merged)

    def _read_state_file(self) -> dict:
        """The state file as it is on disk now ({} when missing or damaged)."""
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("Ignoring damaged %s: %s", self.state_path, exc)
            return {}
        return data if isinstance(data, dict) else {}

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

    # --------------------------------------------------------------------------- per-stone labels
    def instances_path(self, image: Path | str) -> Path:
        """Where a photo's per-stone labels live: ``instances/<stem>.png``."""
        return self.instances_dir / f"{Path(image).stem}.png"

    def wrote_instances(self, image: Path | str) -> bool:
        """Whether ``instances/<stem>.png`` is the file the app wrote (its bytes as recorded):
        only then may the app replace or remove it."""
        path = self.instances_path(image)
        recorded = self.state.get(INSTANCES_KEY, {}).get(Path(image).stem)
        if not recorded or not path.is_file():
            return False
        try:
            return file_sha256(path) == recorded
        except OSError:
            return False

    def _record_instances(self, stem: str, sha256: str | None) -> None:
        table = dict(self.state.get(INSTANCES_KEY, {}))
        if sha256 is None:
            if stem not in table:
                return
            table.pop(stem)
        else:
            table[stem] = sha256
        if table:
            self.state[INSTANCES_KEY] = table
        else:
            self.state.pop(INSTANCES_KEY, None)
        self.save_state()

    def save_instances(self, image: Path | str, labels: np.ndarray, mask: np.ndarray) -> Path:
        """Keep ``labels`` (a photo's stones as the user cut and merged them) as its per-stone
        labels for training: a 16-bit PNG written atomically, ids renumbered 1..N in order.

        Refused (StonesegError, nothing written) unless the stones lie exactly where ``mask``
        (the photo's mask as it is now) has stone, and unless the file there, if any, is
        one the app wrote: the user's own labels are never overwritten.
        """
        image, labels, mask = Path(image), np.asarray(labels), np.asarray(mask)
        path = self.instances_path(image)
        if labels.shape != mask.shape[:2]:
            raise StonesegError(
                f"The stones of {image.name} ({labels.shape[1]}x{labels.shape[0]}) and its mask "
                f"({mask.shape[1]}x{mask.shape[0]}) differ in size; labels not saved."
            )
        if not np.array_equal(labels > 0, mask > 0):
            raise StonesegError(
                f"The stones of {image.name} do not lie exactly where its mask is stone (the "
                "mask was edited since they were split): press Analyse to split it again."
            )
        if path.exists() and not self.wrote_instances(image):
            raise StonesegError(
                f"{path} holds per-stone labels the app did not write (yours): left as they are. "
                "Move them away to have your cuts and merges saved there."
            )
        compact = _renumbered(labels)
        ok, buf = cv2.imencode(".png", compact, [cv2.IMWRITE_PNG_COMPRESSION, 3])
        if not ok:
            raise StonesegError(f"Cannot encode {path.name} as PNG.")
        data = buf.tobytes()
        digest = hashlib.sha256(data).hexdigest()
        if self.state.get(INSTANCES_KEY, {}).get(image.stem) == digest and path.is_file():
            return path  # the same stones, already written (wrote_instances checked the bytes)
        try:
            atomic_write_bytes(path, data)  # as masks: the old file or the new, never half
        except OSError as exc:
            raise StonesegError(describe_os_error(exc, path)) from exc
        self._record_instances(image.stem, digest)
        log.info("Saved per-stone labels %s (%d stones)", path, int(compact.max(initial=0)))
        return path

    def discard_instances(self, image: Path | str) -> bool:
        """Remove the per-stone labels the app wrote for this photo (its cuts and merges were
        all taken back); a file the user put there stays. True when one was removed."""
        image = Path(image)
        if not self.wrote_instances(image):
            return False
        path = self.instances_path(image)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StonesegError(describe_os_error(exc, path)) from exc
        self._record_instances(image.stem, None)
        log.info("Removed %s: its cuts and merges were taken back", path)
        return True

    def training_pairs(self) -> tuple[list[tuple[Path, ...]], list[str]]:
        """The labelled pairs to train on, with per-stone labels where a photo has them:
        ``(image, mask, instances)`` where ``instances/<stem>.png`` exists, else
        ``(image, mask)``; and notes for the user (empty when there is nothing to say).

        Labels the app wrote that no longer fit their mask (``instances_disagreement``: the
        mask was edited after the stones were cut or merged) are left out for that photo,
        which then trains from the mask's pieces, and named in a note; they are not deleted.
        Any other file is passed on and checked by ``dataset.load_samples``, which names every
        bad one in one message.
        """
        pairs: list[tuple[Path, ...]] = []
        stale: list[str] = []
        for img, mask_path in self.labelled_pairs():
            inst = self.instances_path(img)
            if not inst.is_file():
                pairs.append((img, mask_path))
                continue
            if self.wrote_instances(img):
                why = _stale_because(inst, mask_path)
                if why is not None:
                    stale.append(f"{img.name} ({why})")
                    pairs.append((img, mask_path))
                    continue
            pairs.append((img, mask_path, inst))
        notes = []
        if stale:
            notes.append(
                f"The per-stone labels of {len(stale)} photo(s) were left out: their mask was "
                f"edited after the stones were cut or merged: {'; '.join(stale)}. Those photos "
                "train from the mask's pieces; open each and press Analyse in the Grains panel "
                "to save them afresh (your cuts and merges are replayed)."
            )
            log.warning(notes[-1])
        return pairs, notes

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


def _renumbered(labels: np.ndarray) -> np.ndarray:
    """Labels as uint16 ids 1..N in the order of the old ids (cuts and merges leave gaps)."""
    if labels.size and int(labels.min()) < 0:
        raise StonesegError("Stone labels cannot be negative.")
    top = int(labels.max(initial=0))
    present = np.bincount(labels.ravel(), minlength=top + 1) > 0
    present[0] = False
    n = int(present.sum())
    if n > MAX_INSTANCE_ID:
        raise StonesegError(
            f"{n} stones do not fit a 16-bit PNG (at most {MAX_INSTANCE_ID}); labels not saved."
        )
    lut = np.zeros(top + 1, np.uint16)
    lut[present] = np.arange(1, n + 1, dtype=np.uint16)
    return lut[labels]


def _stale_because(instances: Path, mask_path: Path) -> str | None:
    """Why an app-written labels file no longer fits its mask; None when it does (or when a
    file cannot be read: ``load_samples`` names that one)."""
    try:
        return instances_disagreement(read_instance_labels(instances), read_mask(mask_path))
    except StonesegError:
        return None


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
