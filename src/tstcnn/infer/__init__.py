"""Using a trained model: clip classification, sliding-window detection, MediaEval scoring, export.

``windows`` (which frames each window covers), ``aggregate`` (test-time aggregation over windows and
per-frame smoothing), ``segments`` (per-frame probabilities to strokes), ``scoring`` (the MediaEval
metrics) are plain NumPy; ``predict``, ``detect`` and ``export`` run models.
"""
