"""A project-level registry of model classes, consulted first by the smart loader.

It mirrors `AutoModel*.register`: users map a model_type (or a config class) to the model class
their training code wants, without patching transformers' own mappings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ModelRegistry:
    """model_type -> model classes, in registration order."""

    _classes: dict[str, list[Any]] = field(default_factory=dict)

    def register(self, model_type: str | Any, model_class: Any, *, config_class: Any = None) -> None:
        """Map `model_type` (a string, or a config class with `.model_type`) to `model_class`.

        With `config_class`, also teach `AutoConfig` the model_type, as `AutoConfig.register` does.
        """
        key = model_type if isinstance(model_type, str) else model_type.model_type
        if config_class is not None:
            from transformers import AutoConfig

            AutoConfig.register(key, config_class, exist_ok=True)
        classes = self._classes.setdefault(key, [])
        if model_class not in classes:
            classes.append(model_class)

    def unregister(self, model_type: str) -> None:
        """Forget every class registered for `model_type`."""
        self._classes.pop(model_type, None)

    def classes_for(self, config: Any) -> list[Any]:
        """Classes registered for this config's model_type."""
        return list(self._classes.get(getattr(config, "model_type", ""), ()))


REGISTRY = ModelRegistry()
"""The registry `loader.register` writes to and `smart` reads by default."""


def register(model_type: str | Any, model_class: Any, *, config_class: Any = None) -> None:
    """Register a model class for `smart` (see `ModelRegistry.register`)."""
    REGISTRY.register(model_type, model_class, config_class=config_class)
