"""Tiny checkpoints that ship their own modeling code, as hub repos loaded with `trust_remote_code` do.

The folder gets the remote code's `*.py` files and a `config.json` written from the recipe alone
(its `model_type`, `architectures` and `auto_map`), the same in every release, as a hub repo's is.
The weights and the reference logits come from the recipe's `twin`, a transformers class with the
same weight names and maths: they exist even in releases where the remote code no longer imports,
and a remote model that loads but computes something else is caught by the reference logits.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compat_matrix.spec.schema import REMOTE_CODE_ROOT

if TYPE_CHECKING:
    from compat_matrix.spec.schema import Recipe, RemoteCode


def source_files(sources: str) -> list[Path]:
    """The `*.py` files of `compat_tests/remote_code/<sources>/`, by name."""
    return sorted((REMOTE_CODE_ROOT / sources).glob("*.py"))


def source_digest(sources: str) -> str:
    """sha256 of the files' names and bytes: editing the code gives a new checkpoint folder."""
    digest = hashlib.sha256()
    for path in source_files(sources):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def twin(recipe: Recipe, config_kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """(twin class, its config) for the recipe's hyperparameters."""
    import transformers

    assert recipe.remote_code is not None
    model_class = getattr(transformers, recipe.remote_code.twin)
    return model_class, model_class.config_class(**config_kwargs)


def ship(folder: Path, recipe: Recipe, config_kwargs: dict[str, Any]) -> None:
    """Copy the sources in and replace the twin's config.json by the remote code's own."""
    code: RemoteCode | None = recipe.remote_code
    assert code is not None
    for path in source_files(code.sources):
        shutil.copyfile(path, folder / path.name)
    config = {
        "architectures": [recipe.architecture],
        "auto_map": dict(code.auto_map),
        "model_type": recipe.model_type,
        **config_kwargs,
        "torch_dtype": recipe.dtype,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
