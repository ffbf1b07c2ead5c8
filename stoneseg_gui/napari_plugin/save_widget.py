""" "Save to StoneSeg project": a labels layer as a photo's mask, and its stones as the photo's
per-stone labels (``saving.save_labels``, the project's own writers)."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, PushButton

from stoneseg_core.errors import StonesegError

from .common import check_binding, labels_picker, show_error
from .layers import PREDICTION, STONES, source_of
from .saving import Saved, photo_names, save_labels


class SaveWidget(Container):
    def __init__(self, napari_viewer) -> None:
        check_binding()
        self.viewer = napari_viewer
        self.layer = labels_picker(napari_viewer)
        self.folder = FileEdit(mode="d", label="project")
        self.photo = ComboBox(label="photo", choices=self._photo_choices)
        self.per_stone = CheckBox(text="single stones: also save instances/<photo>.png")
        self.reviewed = CheckBox(text="reviewed (train on it)", value=True)
        self.save_button = PushButton(text="Save")
        self.status = Label(value="")
        super().__init__(
            widgets=[
                self.layer,
                self.folder,
                self.photo,
                self.per_stone,
                self.reviewed,
                self.save_button,
                self.status,
            ]
        )
        self.layer.changed.connect(self._labels_changed)
        self.folder.changed.connect(lambda _=None: self.photo.reset_choices())
        self.save_button.changed.connect(self.save)
        self._labels_changed()

    def project_folder(self) -> Path | None:
        text = self.folder.line_edit.value.strip()
        return Path(text) if text else None

    def _photo_choices(self, _widget) -> list[str]:
        folder = self.project_folder()
        return photo_names(folder) if folder is not None and folder.is_dir() else []

    def _labels_changed(self, _value=None) -> None:
        """Where a layer the plugin made belongs, and what it holds, as the defaults."""
        layer = self.layer.value
        if layer is None:
            return
        source = source_of(layer)
        if source.project is not None:
            self.folder.value = source.project
            self.photo.reset_choices()
            if source.image is not None and source.image.name in self.photo.choices:
                self.photo.value = source.image.name
        self.per_stone.value = source.kind == STONES
        self.reviewed.value = source.kind != PREDICTION

    def save(self, _value=None) -> Saved | None:
        layer, folder, photo = self.layer.value, self.project_folder(), self.photo.value
        if layer is None or folder is None or not photo:
            self.status.value = "Choose a labels layer, a project folder and its photo."
            return None
        try:
            saved = save_labels(
                folder, photo, layer.data, self.per_stone.value, self.reviewed.value
            )
        except StonesegError as exc:
            self.status.value = str(exc)
            show_error(str(exc))
            return None
        self.status.value = saved.describe()
        return saved
