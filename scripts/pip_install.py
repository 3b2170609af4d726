"""tox's install command: pip, plus COMPAT_MATRIX_TORCH_INDEX as an extra index only when it is set.

GPU runners point it at a CUDA torch index; machines with a local torch wheel leave it unset and
never wait on an index they cannot reach.
"""

import os
import subprocess
import sys

extra = os.environ.get("COMPAT_MATRIX_TORCH_INDEX")
command = [sys.executable, "-I", "-m", "pip", "install", *(["--extra-index-url", extra] if extra else []), *sys.argv[1:]]
sys.exit(subprocess.call(command))
