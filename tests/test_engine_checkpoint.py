"""Checkpoints: weights-only round trip, atomic writes, and one-line errors for every kind of bad file."""

import argparse
import dataclasses
import os
import pickle
import shutil

import pytest
import torch

from tstcnn.config import PRESETS, config_to_dict, override
from tstcnn.models import build_model_from_config
from tstcnn.runtime.checkpoint import load_checkpoint, load_run, save_checkpoint
from tstcnn.taxonomy import TTSTROKE21_CLASSES

CFG = override(PRESETS["cpu-small"], "model", modality="rgb", block="none", input_size=(8, 16, 16),
               channels=(4, 4, 4), num_features=8)


def _save(path, cfg=CFG, classes=TTSTROKE21_CLASSES, **extra):
    model = build_model_from_config(cfg.model)
    save_checkpoint(path, config=config_to_dict(cfg), classes=list(classes), flow_scale=3.5,
                    prep=dataclasses.asdict(cfg.prep), epoch=4, model=model.state_dict(), **extra)
    return model


def _assert_one_line(excinfo):
    assert "\n" not in str(excinfo.value)


def test_round_trip_loads_weights_only_and_builds_the_model(tmp_path):
    run = tmp_path / "run"
    model = _save(run / "checkpoints" / "best.pt", rng={"torch": torch.get_rng_state()})
    raw = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert raw["format"] == "tstcnn-checkpoint" and raw["version"] == 1
    loaded = load_run(run)
    assert not loaded.model.training and loaded.epoch == 4 and loaded.flow_scale == 3.5
    assert loaded.config == CFG and loaded.classes.classes == TTSTROKE21_CLASSES and loaded.prep == CFG.prep
    x = torch.rand(2, 3, 8, 16, 16)
    torch.testing.assert_close(loaded.model(rgb=x), model.eval()(rgb=x), rtol=0, atol=0)
    assert not list((run / "checkpoints").glob(".*tmp")), "no temporary file left behind"


def test_truncated_file_is_one_line_error(tmp_path):
    path = tmp_path / "last.pt"
    _save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or not a torch file") as excinfo:
        load_checkpoint(path)
    _assert_one_line(excinfo)


def test_foreign_files_are_one_line_errors(tmp_path):
    bare = tmp_path / "bare.pt"
    torch.save(build_model_from_config(CFG.model).state_dict(), bare)
    with pytest.raises(ValueError, match="not a tstcnn checkpoint") as excinfo:
        load_checkpoint(bare)
    _assert_one_line(excinfo)
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a readable checkpoint") as excinfo:
        load_checkpoint(text)
    _assert_one_line(excinfo)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


def test_pickled_objects_are_refused_by_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": "tstcnn-checkpoint", "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(ValueError, match="refused: the file holds Python objects") as excinfo:
        load_checkpoint(path)
    _assert_one_line(excinfo)


def test_other_architecture_and_other_classes_are_one_line_errors(tmp_path):
    path = tmp_path / "best.pt"
    _save(path)
    attention = override(CFG, "model", block="attention").model
    with pytest.raises(ValueError, match="another architecture.*block none≠attention") as excinfo:
        load_checkpoint(path, model_config=attention)
    _assert_one_line(excinfo)
    other = list(TTSTROKE21_CLASSES)
    other[3] = "Serve Forehand Smash"
    with pytest.raises(ValueError, match="other classes.*class 3") as excinfo:
        load_checkpoint(path, classes=other)
    _assert_one_line(excinfo)
    with pytest.raises(ValueError, match="21 classes, expected 2"):
        load_checkpoint(path, classes=["a", "b"])
    assert load_checkpoint(path, model_config=CFG.model, classes=TTSTROKE21_CLASSES)["epoch"] == 4


def test_weights_that_do_not_match_their_config_are_one_line_errors(tmp_path):
    path = tmp_path / "best.pt"
    wider = override(CFG, "model", channels=(4, 4, 6))
    model = build_model_from_config(wider.model)
    save_checkpoint(path, config=config_to_dict(CFG), classes=list(TTSTROKE21_CLASSES), epoch=0,
                    model=model.state_dict())
    with pytest.raises(ValueError, match="weights do not match the architecture") as excinfo:
        load_run(path)
    _assert_one_line(excinfo)


def test_a_pickle_that_would_run_code_is_refused_in_one_line(tmp_path, recwarn):
    class RunsCode:
        def __reduce__(self):
            return (os.system, ("echo never",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"format": "tstcnn-checkpoint", "payload": RunsCode()}))
    with pytest.raises(ValueError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "refused" in message and "could run code" in message and message.endswith("it was not loaded")
    assert "\n" not in message and len(recwarn) == 0  # no torch warning printed before the refusal


def test_a_full_disk_while_saving_says_so_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "last.pt", config={}, classes=[], model={}, epoch=1)
    before = path.read_bytes()

    def full_disk(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: shutil._ntuple_diskusage(10 << 30, 10 << 30, 1 << 20))
    with pytest.raises(OSError, match="no space left on device to write .*last.pt"):
        save_checkpoint(path, config={}, classes=[], model={}, epoch=2)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
