"""Video preparation: layouts → decoded frames, optical flow, ROI and normalisation in a prepared store."""

from tstcnn.prep.prepare import PreparedVideo, prepare_dataset, prepare_video_arrays
from tstcnn.prep.store import Store, VideoEntry, finalize_store, write_video_entry

__all__ = ["Store", "VideoEntry", "write_video_entry", "finalize_store", "PreparedVideo", "prepare_video_arrays",
           "prepare_dataset"]
