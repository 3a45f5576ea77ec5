"""Training-step and inference throughput and memory of the TSTCNN against the plain fp32 reference.

The same benchmark as ``tstcnn bench`` (implemented in :mod:`tstcnn.bench`). Paper setting::

    python benchmarks/bench_model.py --size 100x120x120 --batch-size 2 --threads 2

Quick check: ``--size 16x64x64``. Prints a table, then one JSON line.
"""

import sys

from tstcnn.bench import main

if __name__ == "__main__":
    sys.exit(main())
