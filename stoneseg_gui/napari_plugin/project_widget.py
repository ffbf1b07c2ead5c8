""" "Open StoneSeg project": one photo of a project at a time, with its mask and stones (the
reader opens every photo at once, which a big project does not want)."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton

from stoneseg_core.errors import StonesegError
from stoneseg_core.io.project import Project

from .common import check_binding, put_layer, show_error
from .layers import photo_layers


class ProjectWidget(Container):
    def __init__(self, napari_viewer) -> None:
        check_binding()
        self.viewer = napari_viewer
        self.folder = FileEdit(mode="d", label="project")
        self.photo = ComboBox(label="photo", choices=self._photo_choices)
        self.open_button = PushButton(text="Open photo")
        self.status = Label(value="")
        super().__init__(widgets=[self.folder, self.photo, self.open_button, self.status])
        self.folder.changed.connect(self._folder_changed)
        self.open_button.changed.connect(self.open_photo)

    def project_folder(self) -> Path | None:
        text = self.folder.line_edit.value.strip()
        return Path(text) if text else None

    def _photo_choices(self, _widget) -> list[tuple[str, Path]]:
        folder = self.project_folder()
        if folder is None or not folder.is_dir():
            return []
        try:
            return [(p.name, p) for p in Project.open(folder).image_paths()]
        except StonesegError:
            return []

    def _folder_changed(self, _value=None) -> None:
        self.photo.reset_choices()
        n = len(self.photo.choices)
        self.status.value = f"{n} photo{'s' if n != 1 else ''}" if n else "No photos here."

    def open_photo(self, _value=None) -> list:
        """Add the chosen photo's layers (those of an earlier opening are replaced)."""
        folder, image = self.project_folder(), self.photo.value
        if folder is None or image is None:
            self.status.value = "Choose a project folder and a photo."
            return []
        try:
            layers = [
                put_layer(self.viewer, data) for data in photo_layers(Project.open(folder), image)
            ]
        except StonesegError as exc:
            self.status.value = str(exc)
            show_error(str(exc))
            return []
        self.status.value = f"Opened {image.name}."
        return layers
