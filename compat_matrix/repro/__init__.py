"""`compat-matrix repro`: a self-contained script per failing cell, verified in the cell's release."""
