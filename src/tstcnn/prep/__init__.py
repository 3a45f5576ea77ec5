"""Video preparation: layouts → decoded frames, optical flow, ROI and normalisation in a prepared store."""

from tstcnn.prep.store import Store, VideoEntry, finalize_store, write_video_entry

__all__ = ["Store", "VideoEntry", "write_video_entry", "finalize_store"]
