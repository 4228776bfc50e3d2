"""``python -m netflowgen.cli`` (and ``torchrun -m netflowgen.cli``): the netflowgen command."""

import sys

from netflowgen.cli import main

sys.exit(main())
