"""Tiny random checkpoints built offline from `matrix.yaml` recipes, and their model inputs."""
