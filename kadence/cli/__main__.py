"""`python -m kadence.cli`: the `kadence` console script."""

import sys

from kadence.cli import main

sys.exit(main())
