"""File > Import labels… and File > Export labels…: another tool's label files into the open
project's masks and stones, and the project's out (``stoneseg_core.formats``).

Each asks the format and the file or folder through the dialogs seam, saves the open photo's
edits first, runs the import or export on a worker (progress in the status bar) and shows
its report: what was done, skipped and why. An import never replaces a mask unasked: photos
that already have one are left out of the first pass, and the user is asked whether to
replace them (a second pass does, for those photos only).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction

from stoneseg_core.formats import (
    FormatProgress,
    FormatReport,
    export_photos,
    export_targets,
    iter_export,
    iter_import,
)
from stoneseg_core.io.project import Project

from .actions import make_action
from .host import WindowHost
from .workers import Worker, start_worker

# the choices the user is offered: label -> the core's format name
IMPORT_CHOICES = {
    "COCO JSON": "coco",
    "labelme JSON": "labelme",
    "CVAT masks": "cvat",
    "GeoJSON / GeoPackage / shapefile": "geojson",
}
EXPORT_CHOICES = {
    "COCO JSON": "coco",
    "labelme JSON": "labelme",
    "GeoJSON": "geojson",
    "GeoPackage": "gpkg",
}
CANCEL = "Cancel"
REPLACE, KEEP = "Replace them", "Keep mine"
IMPORT_TITLE, EXPORT_TITLE = "Import labels", "Export labels"
REPLACE_TITLE = "Replace masks?"


class LabelFormats(QObject):
    """The two actions and the jobs they start (one at a time)."""

    def __init__(self, host: WindowHost) -> None:
        super().__init__(host)  # type: ignore[arg-type]
        self.host = host
        self.import_action = make_action(
            host,  # type: ignore[arg-type]
            "&Import labels…",
            self.import_labels,
            tip="Read another tool's labels (COCO, labelme, CVAT masks, GeoJSON, GeoPackage, "
            "shapefile) into this project's masks and stones",
        )
        self.export_action = make_action(
            host,  # type: ignore[arg-type]
            "E&xport labels…",
            self.export_labels,
            tip="Write this project's masks and stones as COCO, labelme, GeoJSON or a "
            "GeoPackage (with each stone's measurements)",
        )
        self.worker: Worker | None = None
        self.report: FormatReport | None = None  # the last one shown (tests read it)
        host.session.project_opened.connect(lambda _project: self.refresh())
        self.refresh()

    def actions(self) -> list[QAction]:
        return [self.import_action, self.export_action]

    def refresh(self) -> None:
        idle = self.worker is None
        for action in self.actions():
            action.setEnabled(idle and self.host.project is not None)

    @property
    def busy(self) -> bool:
        return self.worker is not None

    # ------------------------------------------------------------------ import
    def import_labels(self) -> None:
        project = self.host.project
        if project is None or self.busy:
            return
        dialogs = self.host.dialogs
        choices = [*IMPORT_CHOICES, CANCEL]
        answer = dialogs.ask(IMPORT_TITLE, "Which tool's labels?", choices, choices[0])
        if answer not in IMPORT_CHOICES:
            return
        fmt = IMPORT_CHOICES[answer]
        source = self.choose_source(fmt, project.root)
        if source is None:
            return
        self.host.session.after_saving(
            lambda: self.start_import(fmt, source, project), "the import"
        )

    def choose_source(self, fmt: str, start: Path) -> Path | None:
        dialogs = self.host.dialogs
        if fmt == "labelme":
            return dialogs.choose_folder("The folder of labelme JSON files", start)
        filters = {
            "coco": "COCO JSON (*.json *.zip)",
            "cvat": "CVAT mask export (*.zip labelmap.txt)",
            "geojson": "Vector files (*.geojson *.json *.gpkg *.shp *.zip)",
        }[fmt]
        return dialogs.choose_open_file("Labels to import", start, filters)

    def start_import(self, fmt: str, source: Path, project: Project, only=None, first=None):
        overwrite = only is not None
        self.run(
            iter_import,
            (fmt, source, project.root),
            {"overwrite": overwrite, "only": only, "data_dir": project.data_dir},
            lambda report: self.imported(report, fmt, source, project, first),
            "Importing",
        )

    def imported(self, report: FormatReport, fmt, source, project, first: FormatReport | None):
        if first is not None:
            first.merge(report)
            report = first
        elif report.existing():
            names = report.existing()
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            answer = self.host.dialogs.ask(
                REPLACE_TITLE,
                f"{len(names)} photo(s) already have a mask or per-stone labels ({shown}). "
                "Replace them with the imported labels? What they have now is lost.",
                [REPLACE, KEEP],
                KEEP,
            )
            if answer == REPLACE:
                self.start_import(fmt, source, project, only=names, first=report)
                return
        self.show_imported(report)

    def show_imported(self, report: FormatReport) -> None:
        project, session = self.host.project, self.host.session
        if project is not None:
            for name in report.photos:
                photo = project.images_dir / name
                project.set_predicted(photo.stem, False)  # already saved by the job
                session.status_changed.emit(photo, session.image_status(photo), "")
            current = session.current_image_path()
            if current is not None and current.name in report.photos:
                session.reload_current()
        self.show_report(IMPORT_TITLE, report)

    # ------------------------------------------------------------------ export
    def export_labels(self) -> None:
        project = self.host.project
        if project is None or self.busy:
            return
        dialogs = self.host.dialogs
        choices = [*EXPORT_CHOICES, CANCEL]
        answer = dialogs.ask(EXPORT_TITLE, "Export the stones as:", choices, choices[0])
        if answer not in EXPORT_CHOICES:
            return
        fmt = EXPORT_CHOICES[answer]
        out = self.choose_output(fmt, project)
        if out is None or not self.may_overwrite(fmt, project, out):
            return
        self.host.session.after_saving(lambda: self.start_export(fmt, project, out), "the export")

    def choose_output(self, fmt: str, project: Project) -> Path | None:
        dialogs = self.host.dialogs
        if fmt in ("labelme", "geojson"):
            return dialogs.choose_folder(f"A folder for the {fmt} files", project.root)
        suffix = ".json" if fmt == "coco" else ".gpkg"
        name = f"{project.root.name or 'stones'}-{fmt}{suffix}"
        kind = "COCO JSON (*.json)" if fmt == "coco" else "GeoPackage (*.gpkg)"
        path = dialogs.choose_save_file(EXPORT_TITLE, project.root / name, kind)
        return path.with_suffix(suffix) if path is not None and not path.suffix else path

    def may_overwrite(self, fmt: str, project: Project, out: Path) -> bool:
        """Files in the way: a file the save dialog chose was asked about there; a folder's
        files are asked about here."""
        if fmt not in ("labelme", "geojson"):
            return True
        in_way = [
            t for t in export_targets(fmt, project, out, export_photos(project)) if t.exists()
        ]
        if not in_way:
            return True
        answer = self.host.dialogs.ask(
            EXPORT_TITLE,
            f"{len(in_way)} file(s) in {out} would be replaced ({in_way[0].name}, ...). "
            "Replace them?",
            [REPLACE, KEEP],
            KEEP,
        )
        return answer == REPLACE

    def start_export(self, fmt: str, project: Project, out: Path) -> None:
        self.run(
            iter_export,
            (fmt, project.root, out),
            {"overwrite": True, "data_dir": project.data_dir},  # overwrite: asked already
            lambda report: self.show_report(EXPORT_TITLE, report),
            "Exporting",
        )

    # ------------------------------------------------------------------ the worker
    def run(self, job, args: tuple, kwargs: dict, done, doing: str) -> None:
        status = self.host.statusBar()
        worker = start_worker(job, *args, **kwargs)
        self.worker = worker
        self.refresh()

        def progressed(event: FormatProgress) -> None:
            count = f" {event.done} of {event.total}" if event.total else ""
            status.showMessage(f"{doing}…{count} {event.what}".rstrip(), 4000)

        def failed(message: str) -> None:
            self.host.dialogs.error(f"{doing} failed", message)

        def finished() -> None:
            if self.worker is worker:
                self.worker = None
            self.refresh()

        worker.progressed.connect(progressed)
        worker.failed.connect(failed)
        worker.succeeded.connect(lambda report: (finished(), done(report)))
        worker.finished.connect(finished)

    def show_report(self, title: str, report: FormatReport) -> None:
        self.report = report
        self.host.statusBar().showMessage(report.summary(), 8000)
        details = "\n".join(str(line) for line in report.lines)
        self.host.dialogs.report(title, report.summary(), details)
