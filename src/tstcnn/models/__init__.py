"""The TSTCNN model family (RGB, Flow, Twin; no, residual or attention blocks) and the I3D baseline."""

from tstcnn.models._builder import (
    BLOCK_KINDS,
    MODALITIES,
    PAPER_TABLE_I,
    build_model,
    build_model_from_config,
    count_parameters,
    create_model,
    list_models,
    register_model,
)
from tstcnn.models.blocks import AttentionBlock3d, ConvStage3d, ResidualBlock3d
from tstcnn.models.i3d import I3D, LateFusion, load_i3d_checkpoint
from tstcnn.models.tstcnn import TSTCNN, Branch3d, TwinFusion

__all__ = [
    "BLOCK_KINDS", "MODALITIES", "PAPER_TABLE_I", "build_model", "build_model_from_config", "count_parameters",
    "create_model", "list_models", "register_model", "AttentionBlock3d", "ConvStage3d", "ResidualBlock3d",
    "I3D", "LateFusion", "load_i3d_checkpoint", "TSTCNN", "Branch3d", "TwinFusion",
]
