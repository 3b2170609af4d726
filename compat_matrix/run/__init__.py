"""Running the matrix: releases through tox, the results store, drift recording, as-published
cells and checkpoint prefetch."""
