"""train --init-from: a new run starts from a trained run's weights, the classifier rebuilt when the classes differ."""

import logging

import pytest
import torch

from tstcnn.config import override
from tstcnn.engine.trainer import TrainData, fit, init_from_checkpoint
from tstcnn.models import build_model_from_config
from tstcnn.runtime.checkpoint import load_checkpoint
from tstcnn.taxonomy import Taxonomy

from engine_helpers import CLASSES, SignalClips, tiny_config, tiny_data

pytestmark = pytest.mark.usefixtures("one_thread")

OTHER = Taxonomy(("Serve Backhand Loop", "Offensive Forehand Flip", "Negative"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run (4 classes, rgb)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fit(tiny_config(epochs=1), tiny_data(), tmp_path_factory.mktemp("init") / "run", progress=False)
    finally:
        torch.set_num_threads(threads)  # a module fixture outlives one_thread: later test files get their threads


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_same_classes_load_every_weight_strictly(trained):
    cfg = tiny_config(seed=7)  # another seed: a fresh model differs from the trained one
    model = build_model_from_config(cfg.model)
    saved = load_checkpoint(trained / "checkpoints" / "best.pt")["model"]
    assert any(not torch.equal(v, saved[k]) for k, v in _weights(model).items())
    assert init_from_checkpoint(model, trained, cfg, list(CLASSES.classes)) is False
    assert all(torch.equal(v, saved[k]) for k, v in _weights(model).items())


def test_other_classes_rebuild_the_classifier_with_a_note(trained, caplog):
    cfg = override(tiny_config(), "model", num_classes=len(OTHER))
    model = build_model_from_config(cfg.model)
    fresh = _weights(model)
    saved = load_checkpoint(trained / "checkpoints" / "last.pt")["model"]
    with caplog.at_level(logging.INFO, logger="tstcnn.engine.trainer"):
        assert init_from_checkpoint(model, trained / "checkpoints" / "last.pt", cfg, list(OTHER.classes)) is True
    notes = [r.getMessage() for r in caplog.records if "classifier starts afresh" in r.getMessage()]
    assert len(notes) == 1 and "\n" not in notes[0]
    for key, value in _weights(model).items():
        if key.startswith("classifier."):
            assert value.shape[0] == len(OTHER) and torch.equal(value, fresh[key])
        else:
            assert torch.equal(value, saved[key]), key


def test_another_architecture_is_refused_in_one_line(trained):
    cfg = override(tiny_config(), "model", channels=(4, 4, 8))
    with pytest.raises(ValueError, match="another architecture") as error:
        init_from_checkpoint(build_model_from_config(cfg.model), trained, cfg, list(CLASSES.classes))
    assert "\n" not in str(error.value)


def test_fine_tuning_run_starts_from_the_weights_and_resume_keeps_its_own(trained, tmp_path):
    """Through fit: with a learning rate of ~0 the fine-tuned run keeps the trained conv weights; a resumed run
    continues from its own checkpoint, not from --init-from's."""
    data = TrainData(train=SignalClips(8, num_classes=len(OTHER), seed=3),
                     validation=SignalClips(4, num_classes=len(OTHER), seed=4), classes=OTHER)
    cfg = override(tiny_config(epochs=1, lr=1e-12, weight_decay=0.0, seed=5, init_from=str(trained)), "model",
                   num_classes=len(OTHER))
    run = fit(cfg, data, tmp_path / "tuned", progress=False)
    source = load_checkpoint(trained / "checkpoints" / "best.pt")["model"]
    tuned = load_checkpoint(run / "checkpoints" / "last.pt")
    assert tuned["config"]["train"]["init_from"] == str(trained)
    convs = [k for k in source if k.endswith("conv.weight") or k.endswith("fc.weight")]
    assert convs and all(torch.allclose(tuned["model"][k], source[k], atol=1e-6) for k in convs)
    # resume with an --init-from that no longer exists: a resumed run never reads it
    moved = override(cfg, "train", epochs=2, init_from=str(tmp_path / "gone"))
    resumed = load_checkpoint(fit(moved, data, run, resume=True, progress=False) / "checkpoints" / "last.pt")
    assert resumed["epoch"] == 2
