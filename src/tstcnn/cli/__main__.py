"""``python -m tstcnn.cli``: the ``tstcnn`` command, for ``torchrun -m tstcnn.cli`` and environments without the
console script."""

import sys

from tstcnn.cli import main

sys.exit(main())
