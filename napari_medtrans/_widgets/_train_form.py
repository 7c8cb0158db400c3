"""The training-config form of the Train widget: common fields plus each method's own.

The form knows the methods only as :class:`napari_medtrans.contract.MethodSpec`
(what ``python -m training --list-methods --json`` answers); it never imports
:mod:`training`. It turns its fields into a :class:`~napari_medtrans.contract.TrainConfig`
wrapped in a :class:`~napari_medtrans.launcher.TrainRequest`. Defaults and tooltips
come from the contract's dataclasses; each method option's tooltip is its ``help``.

Floats are typed in line edits (``2e-4`` stays ``2e-4``): spin boxes round
learning rates to their number of decimals.
"""

from __future__ import annotations

import os
import time
from functools import partial
from pathlib import Path
from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtGui import QDoubleValidator
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_medtrans.constants import DEVICES, MODALITIES, REGIMES, TRAIN_PRECISIONS
from napari_medtrans.contract import DataConfig, MethodSpec, OptionSpec, TrainConfig, option_help
from napari_medtrans.launcher import MAX_SIZE, MIN_SIZE, TrainRequest

from ._precision import offer_precisions

FOLDERS = "folders"
"""Data-source choice meaning "source and target folders" (the others are phantom regimes)."""

CONFIG_HELP = option_help(TrainConfig)
"""Tooltips of the common fields: the config's attribute docstrings."""
DATA_HELP = option_help(DataConfig)


def default_runs_folder() -> Path:
    """``$MEDTRANS_RUNS_DIR``, or ``~/medtrans/runs``."""
    return Path(os.environ.get("MEDTRANS_RUNS_DIR", Path.home() / "medtrans" / "runs"))


class FloatEdit(QLineEdit):
    """A line edit for one float in plain or scientific notation (``2e-4``).

    Args:
        value: Initial value; None leaves the field empty.
        optional: An empty field is valid and means None ("use the default").
    """

    def __init__(self, value: float | None = None, *, optional: bool = False, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._optional = optional
        validator = QDoubleValidator(self)
        validator.setNotation(QDoubleValidator.Notation.ScientificNotation)
        self.setValidator(validator)
        if optional:
            self.setPlaceholderText("default")
        self.set_value(value)

    def set_value(self, value: float | None) -> None:
        """Show ``value`` (empty for None)."""
        self.setText("" if value is None else repr(float(value)))

    def value(self) -> float | None:
        """The typed value; None when empty and optional.

        Raises:
            ValueError: When the text is not a number (or empty for a required field).
        """
        text = self.text().strip()
        if not text and self._optional:
            return None
        return float(text)


class OptionField:
    """An editor for one method option, chosen by its type.

    Args:
        spec: The option as the trainer lists it.
    """

    KINDS = ("float", "int", "bool", "str", "choice")
    """Option types the form can edit; options of other types keep the method's default."""

    def __init__(self, spec: OptionSpec) -> None:
        self.spec = spec
        default = spec.default
        if spec.type == "bool":
            self.widget: QWidget = QCheckBox()
            self.widget.setChecked(bool(default))
        elif spec.type == "int":
            self.widget = QSpinBox()
            self.widget.setRange(-(2**31) + 1, 2**31 - 1)
            self.widget.setValue(int(default or 0))
        elif spec.type == "float":
            self.widget = FloatEdit(default, optional=default is None)
        elif spec.type == "choice":
            self.widget = QComboBox()
            self.widget.addItems([str(c) for c in spec.choices])
            self.widget.setCurrentText(str(default))
        else:
            self.widget = QLineEdit("" if default is None else str(default))
        self.widget.setToolTip(spec.help)

    def value(self) -> Any:
        """Current value, typed like the default."""
        widget = self.widget
        if isinstance(widget, QCheckBox):
            return widget.isChecked()
        if isinstance(widget, QSpinBox):
            return widget.value()
        if isinstance(widget, FloatEdit):
            return widget.value()
        if isinstance(widget, QComboBox):
            return self.spec.choices[widget.currentIndex()]
        text = widget.text().strip()
        return None if not text and self.spec.default is None else text

    def changed(self) -> bool:
        """True when the value differs from the method's default."""
        return self.value() != self.spec.default


class MethodOptions(QGroupBox):
    """The editable options of one method (shown only while that method is chosen)."""

    def __init__(self, method: MethodSpec, parent: QWidget | None = None) -> None:
        super().__init__(f"{method.name} options", parent)
        self.fields = [OptionField(o) for o in method.options if o.type in OptionField.KINDS]
        layout = QFormLayout(self)
        for option in self.fields:
            layout.addRow(option.spec.name, option.widget)
        if not self.fields:
            layout.addRow(QLabel("no options"))

    def changed_options(self) -> dict[str, Any]:
        """Option name → value for the options that differ from the method's defaults."""
        return {f.spec.name: f.value() for f in self.fields if f.changed()}


def _folder_row(edit: QLineEdit, caption: str) -> QWidget:
    """A line edit with a "…" button opening a folder dialog."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    button = QPushButton("…")
    button.setFixedWidth(28)

    def browse() -> None:
        folder = QFileDialog.getExistingDirectory(row, caption, edit.text())
        if folder:
            edit.setText(folder)

    button.clicked.connect(browse)
    layout.addWidget(edit)
    layout.addWidget(button)
    return row


class TrainForm(QWidget):
    """The training config form.

    Signals:
        methods_loaded: Emitted once the method list arrived and the form is usable.
    """

    methods_loaded = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.methods: dict[str, MethodSpec] = {}
        self._option_boxes: dict[str, MethodOptions] = {}

        self.method = QComboBox()
        self.method.addItem("loading methods…")
        self.method.setEnabled(False)
        self.method_info = QLabel()
        self.method_info.setWordWrap(True)
        self.data = QComboBox()
        for regime in REGIMES:
            self.data.addItem(f"phantom, {regime}", regime)
        self.data.addItem("source / target folders", FOLDERS)
        self.data.setToolTip(f"{DATA_HELP['phantom']} Or: {DATA_HELP['source']}")
        config, data = TrainConfig(), DataConfig()
        self.subjects = QSpinBox()
        self.subjects.setRange(2, 1000)
        self.subjects.setValue(data.phantom_subjects)
        self.subjects.setToolTip(DATA_HELP["phantom_subjects"])
        self.source = QLineEdit()
        self.source.setToolTip(DATA_HELP["source"])
        self.target = QLineEdit()
        self.target.setToolTip(DATA_HELP["target"])
        self.paired = QCheckBox("paired (same file names)")
        self.paired.setToolTip(DATA_HELP["paired"])
        self.source_modality = QComboBox()
        self.source_modality.addItems(MODALITIES)
        self.source_modality.setCurrentText(data.source_modality)
        self.source_modality.setToolTip(DATA_HELP["source_modality"])
        self.target_modality = QComboBox()
        self.target_modality.addItems(MODALITIES)
        self.target_modality.setCurrentText(data.target_modality)
        self.target_modality.setToolTip(DATA_HELP["target_modality"])
        self.iterations = QSpinBox()
        self.iterations.setRange(1, 10_000_000)
        self.iterations.setValue(config.iterations)
        self.iterations.setToolTip(CONFIG_HELP["iterations"])
        self.crop_size = QSpinBox()
        self.crop_size.setRange(MIN_SIZE, MAX_SIZE)
        self.crop_size.setSingleStep(32)
        self.crop_size.setValue(data.size)
        self.crop_size.setToolTip(DATA_HELP["size"])
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 1024)
        self.batch_size.setValue(config.batch_size)
        self.batch_size.setToolTip(CONFIG_HELP["batch_size"])
        self.lr = FloatEdit(config.lr, optional=True)
        self.lr.setToolTip(CONFIG_HELP["lr"])
        self.preview_every = QSpinBox()
        self.preview_every.setRange(1, 1_000_000)
        self.preview_every.setValue(config.preview_every)
        self.preview_every.setToolTip(CONFIG_HELP["preview_every"])
        self.log_every = QSpinBox()
        self.log_every.setRange(1, 1_000_000)
        self.log_every.setValue(config.log_every)
        self.log_every.setToolTip(CONFIG_HELP["log_every"])
        self.device = QComboBox()
        self.device.setEditable(True)  # "cuda:1" etc.
        self.device.addItems(DEVICES)
        self.device.setCurrentText(config.device)
        self.device.setToolTip(CONFIG_HELP["device"])
        self.precision = QComboBox()
        self.precision.addItems(TRAIN_PRECISIONS)
        self.precision.setCurrentText(config.precision)
        self.precision.setToolTip(CONFIG_HELP["precision"])
        offer_precisions(self.precision, self.device.currentText())
        self.device.currentTextChanged.connect(partial(offer_precisions, self.precision))
        self.threads = QSpinBox()
        self.threads.setRange(0, 1024)
        self.threads.setSpecialValueText("default")
        self.threads.setValue(config.num_threads)
        self.threads.setToolTip(CONFIG_HELP["num_threads"])
        self.runs_folder = QLineEdit(str(default_runs_folder()))
        self.run_name = QLineEdit()
        self.run_name.setPlaceholderText("<method>-<date>-<time>")

        data_box = QGroupBox("Data")
        data_form = QFormLayout(data_box)
        data_form.addRow("data", self.data)
        data_form.addRow("subjects", self.subjects)
        self._source_row = _folder_row(self.source, "Source volumes")
        self._target_row = _folder_row(self.target, "Target volumes")
        data_form.addRow("source folder", self._source_row)
        data_form.addRow("target folder", self._target_row)
        data_form.addRow(self.paired)
        data_form.addRow("modalities", _pair(self.source_modality, QLabel("→"), self.target_modality))
        self._data_form = data_form

        train_box = QGroupBox("Training")
        train_form = QFormLayout(train_box)
        train_form.addRow("method", self.method)
        train_form.addRow(self.method_info)
        train_form.addRow("iterations", self.iterations)
        train_form.addRow("size", self.crop_size)
        train_form.addRow("batch size", self.batch_size)
        train_form.addRow("learning rate", self.lr)
        train_form.addRow("log every", self.log_every)
        train_form.addRow("preview every", self.preview_every)
        train_form.addRow("device", self.device)
        train_form.addRow("precision", self.precision)
        train_form.addRow("CPU threads", self.threads)

        run_box = QGroupBox("Run")
        run_form = QFormLayout(run_box)
        run_form.addRow("runs folder", _folder_row(self.runs_folder, "Runs folder"))
        run_form.addRow("run name", self.run_name)

        self._options_layout = QVBoxLayout()
        self._options_layout.setContentsMargins(0, 0, 0, 0)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(data_box)
        layout.addWidget(train_box)
        layout.addLayout(self._options_layout)
        layout.addWidget(run_box)

        self.data.currentIndexChanged.connect(self._show_data_fields)
        self.method.currentIndexChanged.connect(self._show_method)
        self._show_data_fields()

    # ------------------------------------------------------------------ methods
    def set_methods(self, methods: tuple[MethodSpec, ...]) -> None:
        """Fill the method selector and build each method's option box (hidden)."""
        self.methods = {m.name: m for m in methods}
        self.method.blockSignals(True)
        self.method.clear()
        for method in methods:
            box = MethodOptions(method)
            box.setVisible(False)
            self._options_layout.addWidget(box)
            self._option_boxes[method.name] = box
            self.method.addItem(method.name)
        self.method.blockSignals(False)
        self.method.setEnabled(bool(methods))
        self._show_method()
        self.methods_loaded.emit()

    def _show_method(self) -> None:
        name = self.method.currentText()
        for method_name, box in self._option_boxes.items():
            box.setVisible(method_name == name)
        method = self.methods.get(name)
        if method is None:
            return
        needs = "paired or misaligned data" if method.paired else "unpaired or paired data"
        outputs = ", ".join(method.outputs)
        self.method_info.setText(f"{method.summary}\nneeds {needs}; outputs: {outputs}".strip())

    def select_method(self, name: str) -> None:
        """Choose a method by name."""
        index = self.method.findText(name)
        if index < 0:
            raise ValueError(f"unknown method {name!r}; known: {', '.join(self.methods)}")
        self.method.setCurrentIndex(index)

    def option_box(self, name: str) -> MethodOptions:
        """The option box of method ``name``."""
        return self._option_boxes[name]

    # ------------------------------------------------------------------ data
    def select_data(self, choice: str) -> None:
        """Choose a phantom regime or :data:`FOLDERS`."""
        self.data.setCurrentIndex(self.data.findData(choice))

    def _show_data_fields(self) -> None:
        folders = self.data.currentData() == FOLDERS
        rows = {self._source_row: folders, self._target_row: folders, self.paired: folders, self.subjects: not folders}
        for row, visible in rows.items():
            label = self._data_form.labelForField(row)
            if label is not None:
                label.setVisible(visible)
            row.setVisible(visible)

    # ------------------------------------------------------------------ result
    def request(self) -> tuple[TrainRequest | None, list[str]]:
        """Build the request from the fields.

        Returns:
            The request (None when a field cannot be parsed) and the problems
            found, including those of :meth:`TrainRequest.validate`.
        """
        method = self.methods.get(self.method.currentText())
        if method is None:
            return None, ["the method list has not loaded yet"]
        problems: list[str] = []
        lr = None
        try:
            lr = self.lr.value()
        except ValueError:
            problems.append(f"learning rate {self.lr.text()!r} is not a number")
        else:
            if lr is not None and lr <= 0:
                problems.append("learning rate must be positive")
        for option in self._option_boxes[method.name].fields:
            try:
                option.value()
            except ValueError:
                problems.append(f"{method.name} option {option.spec.name}: not a number")
        if problems:
            return None, problems
        name = self.run_name.text().strip() or f"{method.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if os.sep in name or (os.altsep and os.altsep in name) or name in (".", ".."):
            return None, [f"run name {name!r} must be a plain folder name"]
        choice = self.data.currentData()
        folders = choice == FOLDERS
        source, target = _path(self.source), _path(self.target)
        data = DataConfig(
            source=str(source) if folders and source else None,
            target=str(target) if folders and target else None,
            paired=folders and self.paired.isChecked(),
            phantom=None if folders else choice,
            phantom_subjects=self.subjects.value(),
            source_modality=self.source_modality.currentText(),
            target_modality=self.target_modality.currentText(),
            size=self.crop_size.value(),
        )
        config = TrainConfig(
            method=method.name,
            run_dir=str(Path(self.runs_folder.text().strip() or default_runs_folder()).expanduser() / name),
            iterations=self.iterations.value(),
            batch_size=self.batch_size.value(),
            lr=lr,
            device=self.device.currentText().strip() or "auto",
            num_threads=self.threads.value(),
            precision=self.precision.currentText(),  # type: ignore[arg-type]  # items are TRAIN_PRECISIONS
            log_every=self.log_every.value(),
            preview_every=self.preview_every.value(),
            data=data,
            model=self._option_boxes[method.name].changed_options(),
        )
        request = TrainRequest(config)
        problems = request.validate()
        if config.precision == "fp16" and not config.device.startswith("cuda"):
            problems.append("precision fp16 needs a CUDA device: choose bf16 or fp32 for this device")
        if method.paired and (choice == "unpaired" or (folders and not data.paired)):
            problems.append(f"{method.name} trains on paired data: choose paired or misaligned data")
        return request, problems


def _path(edit: QLineEdit) -> Path | None:
    """The folder typed in ``edit``; None when it is empty."""
    text = edit.text().strip()
    return Path(text).expanduser() if text else None


def _pair(*widgets: QWidget) -> QWidget:
    """Widgets side by side in one form row."""
    row = QWidget()
    layout = QHBoxLayout(row)
    layout.setContentsMargins(0, 0, 0, 0)
    for widget in widgets:
        layout.addWidget(widget, 0 if isinstance(widget, QLabel) else 1, Qt.AlignmentFlag.AlignVCenter)
    return row
