"""`python -m compat_matrix.cli`: the `compat-matrix` command."""

import sys

from compat_matrix.cli import main

sys.exit(main())
