"""`compat-matrix init`: a matrix.yaml and a workflow for another repository."""
