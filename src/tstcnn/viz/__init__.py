"""Figures a person opens: training curves, confusion matrices, attention maps, detection timelines, reports."""

import matplotlib

matplotlib.use("Agg")  # figures are written to files, never shown: no display is needed or used
