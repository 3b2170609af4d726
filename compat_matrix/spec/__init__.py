"""The matrix file and what a release environment may import of compat-matrix: the spec, its
validation, cells, result lines and where files live. Imports nothing else of compat_matrix."""
