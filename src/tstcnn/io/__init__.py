"""Reading and writing what users have: videos (PyAV), MediaEval XML and folder layouts, atomic files."""
