"""Figures a person opens: training curves, confusion matrices, attention maps, detection timelines, reports."""
