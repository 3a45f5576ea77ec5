"""Write ``tests/data/legacy_run/``: a tiny Twin-with-attention run trained and saved by a previous tstcnn.

It pins the checkpoint format and the state-dict keys that runs already on disk have, so it must be written by
the version whose files are to stay readable, never refreshed by the current one::

    PYTHONPATH=/path/to/previous/src python tests/data/make_legacy_run.py

Only ``checkpoints/last.pt`` and ``classes.json`` are kept (what ``load_run`` reads), with ``expected.pt``: a fixed
seeded input (stored as 8-bit frames, as videos are) and the logits that version's model gave for it in evaluation
mode. One attention block (the first stage's) keeps the files small; its mask branch still meets two- and
one-frame maps.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # engine_helpers

from tstcnn.config import PRESETS, override  # noqa: E402
from tstcnn.engine.checkpoint import load_run  # noqa: E402  (its place before runtime/; fails on newer versions)
from tstcnn.engine.trainer import TrainData, fit  # noqa: E402

from engine_helpers import CLASSES, SignalClips  # noqa: E402

SIZE = (8, 32, 32)
OUT = HERE / "legacy_run"


def frames_to_inputs(frames: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """8-bit frames as model inputs: RGB in [0, 1], flow in [-1, 1]."""
    return {"rgb": frames["rgb"].float() / 255, "flow": frames["flow"].float() / 127.5 - 1}


def main() -> None:
    cfg = override(PRESETS["cpu-small"], "model", modality="twin", block="attention", num_blocks=1,
                   num_classes=len(CLASSES), input_size=SIZE, channels=(4, 8, 8), num_features=8)
    cfg = override(cfg, "data", num_workers=0)
    cfg = override(cfg, "train", epochs=2, batch_size=4, lr=0.01, scheduler="constant", precision="fp32",
                   channels_last=False)
    data = TrainData(train=SignalClips(16, "twin", size=SIZE, seed=1, jitter=0.05),
                     validation=SignalClips(8, "twin", size=SIZE, seed=2), classes=CLASSES, flow_scale=2.0,
                     prep={"width": 160, "flow": "dis", "roi_smoothing": 2.0, "flow_scale_sigmas": 3.0})
    with tempfile.TemporaryDirectory() as tmp:
        run = fit(cfg, data, Path(tmp) / "run", progress=False)
        shutil.rmtree(OUT, ignore_errors=True)
        (OUT / "checkpoints").mkdir(parents=True)
        shutil.copy(run / "checkpoints" / "last.pt", OUT / "checkpoints" / "last.pt")
        shutil.copy(run / "classes.json", OUT / "classes.json")
    model = load_run(OUT, "last").model
    generator = torch.Generator().manual_seed(1234)
    frames = {"rgb": torch.randint(0, 256, (2, 3, *SIZE), generator=generator, dtype=torch.uint8),
              "flow": torch.randint(0, 256, (2, 2, *SIZE), generator=generator, dtype=torch.uint8)}
    with torch.no_grad():
        logits = model(**frames_to_inputs(frames))
    torch.save({**frames, "logits": logits}, OUT / "expected.pt")
    print(f"{OUT}: logits {logits.tolist()}")


if __name__ == "__main__":
    main()
