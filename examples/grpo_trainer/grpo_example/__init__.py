"""A training package as GRPO repositories write one: a loader keyed on the model id, one training step."""
