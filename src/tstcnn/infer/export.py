"""Export a trained model to ONNX or TorchScript, with its input spec and class names alongside.

``export_run(RUN_DIR, OUT, "onnx")`` writes ``OUT`` (the model) and ``OUT`` with ``.json`` appended
(the spec: input names, shapes and value ranges, class names, flow scale, preparation and model config),
so ``tstcnn predict`` can prepare videos and read the output exactly as the run did. The export is checked
against PyTorch on random inputs at export time (logits relative to their scale, and probabilities)
and the differences are recorded in the spec. :func:`load_export` reads an export back as an
:class:`ExportedRun`, which stands in for :class:`tstcnn.runtime.checkpoint.LoadedRun` in
:mod:`tstcnn.infer.predict`.

The exported graph takes positional inputs in modality order (``rgb``, then ``flow``), each
``(batch, C, T, H, W)`` float32 with a dynamic batch, and returns logits ``(batch, classes)``.
ONNX goes through the TorchScript-based exporter (opset 17), whose missing ``aten::bilinear`` (the Twin's
fusion) is written here as one ``Einsum`` plus the bias.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tstcnn.config import Config, PrepConfig, config_from_dict, config_to_dict
from tstcnn.io.atomic import atomic_path, atomic_write_text
from tstcnn.runtime.checkpoint import load_run
from tstcnn.taxonomy import Taxonomy

__all__ = ["EXPORT_FORMATS", "EXPORT_FORMAT", "EXPORT_VERSION", "INPUT_CHANNELS", "INPUT_RANGES", "input_names",
           "export_model", "compare_outputs", "export_run", "spec_path", "ExportedRun", "load_export"]

EXPORT_FORMATS = ("onnx", "torchscript")
EXPORT_FORMAT = "tstcnn-export"
EXPORT_VERSION = 1
ONNX_OPSET = 17
INPUT_CHANNELS = {"rgb": 3, "flow": 2}
INPUT_RANGES = {"rgb": (0.0, 1.0), "flow": (-1.0, 1.0)}
_SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts"}


def input_names(modality: str) -> tuple[str, ...]:
    """The inputs a model of ``modality`` takes, in the exported graph's order."""
    if modality == "twin":
        return ("rgb", "flow")
    if modality in ("rgb", "i3d-rgb"):
        return ("rgb",)
    if modality in ("flow", "i3d-flow"):
        return ("flow",)
    raise ValueError(f"unknown modality {modality!r}; allowed: rgb, flow, twin, i3d-rgb, i3d-flow")


def spec_path(model_path: str | Path) -> Path:
    """Where the spec of an exported model lives: the model's path with ``.json`` appended."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.name + ".json")


class _PositionalInputs(nn.Module):
    """Wraps a keyword-input model so tracing and ONNX see positional inputs in a fixed order."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        super().__init__()
        self.model = model
        self.names = tuple(names)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs)))


def _bilinear_symbolic(g: Any, x1: Any, x2: Any, weight: Any, bias: Any) -> Any:
    out = g.op("Einsum", x1, weight, x2, equation_s="ni,oij,nj->no")
    if bias.node().kind() == "prim::Constant" and bias.type().kind() == "NoneType":
        return out
    return g.op("Add", out, bias)


def _example_inputs(names: Sequence[str], input_size: Sequence[int], batch: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    inputs = []
    for name in names:
        low, high = INPUT_RANGES[name]
        x = torch.rand(batch, INPUT_CHANNELS[name], *input_size, generator=generator)
        inputs.append(x * (high - low) + low)
    return inputs


def export_model(model: nn.Module, path: str | Path, fmt: str, modality: str, input_size: Sequence[int]) -> Path:
    """Write ``model`` (eval mode, CPU) as ONNX or TorchScript to ``path``, atomically."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; allowed: {', '.join(EXPORT_FORMATS)}")
    names = input_names(modality)
    wrapper = _PositionalInputs(model.cpu().eval(), names).eval()
    example = tuple(_example_inputs(names, input_size, batch=2))
    # Traced without autograd: the graph is for inference, and training-only paths (a pooling with a custom
    # backward) must not enter it.
    with atomic_path(path) as tmp, torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter and tracer warn about their own future
        if fmt == "torchscript":
            torch.jit.trace(wrapper, example, check_trace=False).save(str(tmp))
        else:
            torch.onnx.register_custom_op_symbolic("aten::bilinear", _bilinear_symbolic, ONNX_OPSET)
            axes = {name: {0: "batch"} for name in (*names, "logits")}
            torch.onnx.export(wrapper, example, str(tmp), input_names=list(names), output_names=["logits"],
                              dynamic_axes=axes, opset_version=ONNX_OPSET, dynamo=False)
    return Path(path)


@dataclass
class ExportedRun:
    """An exported model with what is needed to feed it: the same fields ``predict`` reads from a run."""

    model: Any  # callable: model(rgb=..., flow=...) → logits tensor
    config: Config
    classes: Taxonomy
    flow_scale: float
    prep: PrepConfig
    path: Path
    spec: dict[str, Any]


class _OnnxModel:
    def __init__(self, path: Path, names: Sequence[str]) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.names = tuple(names)

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        feeds = {n: inputs[n].detach().cpu().float().numpy() for n in self.names}
        return torch.from_numpy(self.session.run(["logits"], feeds)[0])


class _TorchScriptModel:
    def __init__(self, path: Path, names: Sequence[str]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated upstream, still the format
            self.module = torch.jit.load(str(path), map_location="cpu").eval()
        self.names = tuple(names)

    def __call__(self, **inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.module(*(inputs[n].cpu().float() for n in self.names))


def load_export(path: str | Path) -> ExportedRun:
    """Load an exported model (the model file or its ``.json`` spec) for :mod:`tstcnn.infer.predict`."""
    path = Path(path)
    model_path = path.with_name(path.name[:-len(".json")]) if path.name.endswith(".json") else path
    spec_file = spec_path(model_path)
    for needed in (model_path, spec_file):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed}: missing (an export is the model file and its .json spec beside it)")
    try:
        spec = json.loads(spec_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{spec_file}: unreadable export spec ({exc})") from None
    if not isinstance(spec, dict) or spec.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{spec_file}: not a {EXPORT_FORMAT} spec")
    if spec.get("version") != EXPORT_VERSION:
        raise ValueError(f"{spec_file}: export version {spec.get('version')!r}, this tstcnn reads {EXPORT_VERSION}")
    config = config_from_dict(spec["config"])
    names = [i["name"] for i in spec["inputs"]]
    try:
        model = _OnnxModel(model_path, names) if spec["backend"] == "onnx" else _TorchScriptModel(model_path, names)
    except Exception as exc:  # onnxruntime and torch.jit raise their own exception types for damaged files
        raise ValueError(f"{model_path}: cannot load the exported model ({type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ''})") from None
    return ExportedRun(model=model, config=config, classes=Taxonomy(tuple(spec["classes"])),
                       flow_scale=float(spec["flow_scale"]), prep=config_from_dict({"prep": spec["prep"]}).prep,
                       path=model_path, spec=spec)


def compare_outputs(model: nn.Module, exported: Any, names: Sequence[str], input_size: Sequence[int],
                    batch: int = 3) -> dict[str, float]:
    """Largest differences between PyTorch and an export on random inputs in the documented ranges.

    Returns the absolute logit difference, the logit scale (largest |logit|, at least 1), their ratio
    (``relative``) and the largest difference of the softmax probabilities.
    """
    inputs = dict(zip(names, _example_inputs(names, input_size, batch=batch, seed=1)))
    with torch.inference_mode():
        reference = model(**inputs).float()
        output = exported(**inputs).float()
    absolute = float((output - reference).abs().max())
    scale = max(1.0, float(reference.abs().max()))
    probabilities = float((output.softmax(1) - reference.softmax(1)).abs().max())
    return {"logits_absolute": absolute, "logits_scale": scale, "relative": absolute / scale,
            "probabilities": probabilities}


def export_run(run_dir: str | Path, out: str | Path, fmt: str = "onnx", which: str = "best",
               tolerance: float = 1e-4) -> tuple[Path, Path, dict[str, float]]:
    """Export a run's checkpoint; returns (model path, spec path, :func:`compare_outputs` figures).

    Raises ``ValueError`` when, on random inputs, the probabilities differ from PyTorch's by more than
    ``tolerance``, or the logits by more than ``tolerance`` × the logit scale (float32 convolutions summed
    in another order differ by a few ulps of the largest activations, so an absolute bound on logits of
    magnitude 10³ would fail PyTorch against itself with another convolution back-end).
    """
    run = load_run(run_dir, which)
    model_cfg = run.config.model
    names = input_names(model_cfg.modality)
    out = Path(out)
    export_model(run.model, out, fmt, model_cfg.modality, model_cfg.input_size)
    spec = {
        "format": EXPORT_FORMAT, "version": EXPORT_VERSION, "backend": fmt, "file": out.name,
        "inputs": [{"name": n, "shape": ["batch", INPUT_CHANNELS[n], *model_cfg.input_size], "dtype": "float32",
                    "range": list(INPUT_RANGES[n])} for n in names],
        "output": {"name": "logits", "shape": ["batch", len(run.classes)],
                   "note": "logits; softmax gives the class probabilities"},
        "classes": list(run.classes.classes), "flow_scale": run.flow_scale,
        "prep": config_to_dict(Config(prep=run.prep))["prep"], "config": config_to_dict(run.config),
        "source": {"checkpoint": str(run.path), "epoch": run.epoch},
    }
    spec_file = spec_path(out)
    atomic_write_text(spec_file, json.dumps(spec, indent=1) + "\n")
    parity = compare_outputs(run.model, load_export(out).model, names, model_cfg.input_size)
    spec["parity_with_pytorch"] = parity
    atomic_write_text(spec_file, json.dumps(spec, indent=1) + "\n")
    worst = max(parity["relative"], parity["probabilities"])
    if not np.isfinite(worst) or worst > tolerance:
        raise ValueError(f"{out}: exported outputs differ from PyTorch (logits by {parity['logits_absolute']:.3g} at "
                         f"scale {parity['logits_scale']:.3g}, probabilities by {parity['probabilities']:.3g}; "
                         f"tolerance {tolerance:g})")
    return out, spec_file, parity
