"""Progress output of long jobs: a bar on a terminal, plain lines elsewhere (the trainer's too)."""

from __future__ import annotations

import io
import re
import sys

import pytest

from napari_medtrans.progress import Progress, is_terminal


class Terminal(io.StringIO):
    """A stream that says it is a terminal (tests run without one)."""

    def isatty(self) -> bool:
        return True


def test_is_terminal():
    closed = io.StringIO()
    closed.close()
    assert is_terminal(Terminal()) and not is_terminal(io.StringIO())
    assert not is_terminal(None) and not is_terminal(closed) and not is_terminal(object())  # type: ignore[arg-type]


def test_plain_lines_every_tenth_and_notes():
    out = io.StringIO()
    with Progress(out) as progress:
        progress.begin("training segmenter", 100, unit="it")
        for step in range(1, 101):
            progress.update(step, loss=1.0 / step)
            if step == 50:
                progress.note("halfway")
    lines = out.getvalue().splitlines()
    assert lines[0] == "training segmenter: 0/100 it" and "\r" not in out.getvalue()
    counts = [int(m.group(1)) for line in lines if (m := re.match(r"training segmenter: (\d+)/100 it \(", line))]
    assert counts == list(range(10, 101, 10))
    assert lines[-1].endswith("it/s, loss 0.01)") and "halfway" in lines


def test_terminal_bar_with_values_and_notes_above_it():
    out = Terminal()
    progress = Progress(out)
    assert progress.terminal
    progress.begin("train", 20, unit="it", initial=5)
    progress.update(6, loss_G=0.5)
    progress.note("validation: MAE 80 HU")
    progress.update(20)
    progress.close()
    text = out.getvalue()
    assert "\r" in text and "train: 100%" in text and "20/20" in text and "loss_G=0.5" in text
    assert "it/s" in text and "validation: MAE 80 HU\n" in text
    assert not progress.bar_active


def test_silent_and_notes_only():
    Progress(None).begin("nothing", 3)  # writes nowhere, raises nothing
    out = io.StringIO()
    progress = Progress(out, plain_steps=0)
    progress.begin("train", 10)
    progress.update(10, loss=1.0)
    progress.note("finished")
    assert out.getvalue() == "finished\n"


@pytest.mark.parametrize("terminal", [False, True], ids=["plain", "terminal"])
def test_trainer_bar_on_a_terminal_same_run_files(tmp_path, monkeypatch, capsys, terminal):
    from _training_helpers import tiny_config

    from training.loop import Trainer

    err = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    trainer = Trainer(tiny_config("regression", tmp_path / "run", iterations=6))
    assert trainer.run_training() == 0
    out = capsys.readouterr().out
    log = trainer.run.log_path.read_text()
    assert "it 2/6" in log and "it 6/6" in log and "finished 6 iterations" in log and "\r" not in log
    assert "finished 6 iterations" in out
    if terminal:  # the bar carries count, rate and losses; the count lines stay in the run's log
        assert "train: 100%" in err.getvalue() and "6/6" in err.getvalue() and "it/s" in err.getvalue()
        assert "L1=" in err.getvalue() and "it 2/6" not in out  # the regression method's losses: G, L1
    else:  # unchanged plain output: the log lines on stdout, no bar
        assert "it 2/6" in out and err.getvalue() == ""
