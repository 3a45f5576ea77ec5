"""Procedural table tennis videos: 20 stroke classes and a rejection class in the MediaEval layouts.

``generate_dataset`` writes a dataset (the ``tstcnn synth`` command), ``render_clip`` renders one clip in
memory, ``write_preview`` a contact sheet, ``trivial_features`` the statistics of the difficulty floor.
"""

from tstcnn.synth.floor import trivial_features
from tstcnn.synth.generate import LAYOUTS, SynthSpec, generate_dataset, plan_jobs, split_counts
from tstcnn.synth.preview import contact_sheet, write_preview
from tstcnn.synth.render import RenderedClip, clip_rng, render_clip

__all__ = ["LAYOUTS", "SynthSpec", "generate_dataset", "plan_jobs", "split_counts", "contact_sheet", "write_preview",
           "RenderedClip", "clip_rng", "render_clip", "trivial_features"]
