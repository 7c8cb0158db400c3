"""The Train form alone (no viewer, no trainer process): contract defaults, tooltips, the request."""

from __future__ import annotations

import json

import pytest
from qtpy.QtWidgets import QWidget

from napari_medtrans.contract import DataConfig, TrainConfig, parse_methods_document

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def methods():
    """What ``python -m training --list-methods --json`` answers, computed in-process."""
    from training.cli import methods_json

    return parse_methods_document(json.loads(methods_json()))


@pytest.fixture
def form(qtbot, methods):
    from napari_medtrans._widgets._train_form import TrainForm

    form = TrainForm()
    qtbot.addWidget(form)
    form.set_methods(methods)
    return form


def test_every_option_shows_its_help_as_tooltip(form, methods):
    shown = 0
    for method in methods:
        for field in form.option_box(method.name).fields:
            assert field.widget.toolTip() == field.spec.help
            shown += bool(field.spec.help)
    assert shown >= 4 * len(methods)  # at least the shared generator options the form edits
    common = [
        w
        for w in vars(form).values()
        if isinstance(w, QWidget)
        and w is not form.method
        and w.__class__.__name__ in ("QSpinBox", "QComboBox", "FloatEdit", "QCheckBox")
    ]
    assert len(common) >= 12 and all(w.toolTip() for w in common)


def test_form_defaults_are_the_contract_defaults_and_its_request_is_a_config(form, tmp_path):
    config, data = TrainConfig(), DataConfig()
    assert form.iterations.value() == config.iterations and form.crop_size.value() == data.size
    assert form.precision.currentText() == config.precision and form.subjects.value() == data.phantom_subjects
    form.select_method("cyclegan")
    form.select_data("unpaired")
    form.runs_folder.setText(str(tmp_path))
    form.run_name.setText("r")
    form.lr.setText("2e-5")
    next(f for f in form.option_box("cyclegan").fields if f.spec.name == "ngf").widget.setValue(16)
    request, problems = form.request()
    assert problems == []
    assert request.config == TrainConfig(
        "cyclegan", str(tmp_path / "r"), lr=2e-5, model={"ngf": 16}, data=DataConfig(phantom="unpaired")
    )


def test_the_3d_regression_variant_is_chosen_in_the_form(form, tmp_path):
    """``regression``'s dims choice and patch depth reach the config and the trainer's command line."""
    form.select_method("regression")
    form.select_data("paired")
    form.runs_folder.setText(str(tmp_path))
    form.run_name.setText("r3d")
    fields = {f.spec.name: f for f in form.option_box("regression").fields}
    assert fields["dims"].spec.choices == (2, 3)
    fields["dims"].widget.setCurrentIndex(1)
    fields["patch_depth"].widget.setValue(16)
    request, problems = form.request()
    assert problems == []
    assert request.config.model == {"dims": 3, "patch_depth": 16}
    command = request.command()
    assert "model.dims=3" in command and "model.patch_depth=16" in command
