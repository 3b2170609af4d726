"""A missing package is not a break: a cell that fails for want of an optional package is `skipped`,
`needs <package>`, and every line records which optional packages its environment has.

Planted: a release environment where a processor's optional package is hidden (num2words, which
SmolVLM's processor imports when it runs); a processor part that comes back None (the video
processor, whose backend torchvision is absent here) and is then used; a processor that requires
its video processor (SmolVLM in transformers 5.25.0). Each was a `fail` or a bare skip before.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
import transformers
from transformers.utils import is_torchvision_available

from compat_matrix.spec.cells import Cell
from compat_matrix.spec.validate import DEFAULT_MATRIX, load_matrix
from compat_tests.execute import MatrixState, run_cell
from compat_tests.sources import resolve

MATRIX = load_matrix(DEFAULT_MATRIX, check_model_types=False)

no_torchvision = pytest.mark.skipif(is_torchvision_available(), reason="torchvision is installed here")


@pytest.fixture
def hidden_num2words(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """num2words as a release environment without it sees it: imports fail, transformers' check says no."""
    from transformers.utils import import_utils

    from compat_tests import environment, needs

    monkeypatch.setitem(sys.modules, "num2words", None)
    monkeypatch.setattr(import_utils, "is_num2words_available", lambda: False)
    for cached in (needs.optional_packages, environment.fingerprint):
        cached.cache_clear()
    yield
    for cached in (needs.optional_packages, environment.fingerprint):
        cached.cache_clear()


def _uses_num2words(call: Any) -> Any:
    def processor_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        from num2words import num2words  # noqa: F401  (as SmolVLM's processor does when it runs)

        return call(self, *args, **kwargs)

    return processor_call


def test_a_hidden_optional_package_of_the_processor_is_a_skip_that_names_it(hidden_num2words: None,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    resolve(MATRIX.model("llava"))  # built before the package is needed
    monkeypatch.setattr(transformers.LlavaProcessor, "__call__", _uses_num2words(transformers.LlavaProcessor.__call__))
    record = run_cell(MatrixState(MATRIX), Cell("llava", "explicit_class", "default", "forward"))
    assert record["status"] == "skipped", record["message"]
    assert record["details"]["needs"] == "num2words"
    assert record["message"].startswith("needs num2words: ModuleNotFoundError")
    assert record["packages"]["num2words"] is False


@no_torchvision
def test_a_processor_part_that_comes_back_none_and_is_used_needs_its_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    resolve(MATRIX.model("qwen2_vl"))
    call = transformers.Qwen2VLProcessor.__call__

    def processor_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        getattr(self, "video_processor", None).merge_size  # the part the processor left out, used anyway
        return call(self, *args, **kwargs)

    monkeypatch.setattr(transformers.Qwen2VLProcessor, "__call__", processor_call)
    record = run_cell(MatrixState(MATRIX), Cell("qwen2_vl", "explicit_class", "default", "forward"))
    assert record["status"] == "skipped", record["message"]
    assert record["details"]["needs"] == "torchvision"
    assert "Qwen2VLProcessor's video_processor is absent; AutoVideoProcessor needs torchvision: AttributeError" in record["message"]


@no_torchvision
def test_a_processor_that_requires_its_video_processor_needs_torchvision(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Any) -> None:
    """transformers 5.25.0's SmolVLMProcessor: `video_processor` is a required argument, so the
    processor cannot be built without torchvision. One cause, `needs torchvision`, for every probe."""
    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path))
    init = transformers.Qwen2VLProcessor.__init__

    def requires_video(self: Any, image_processor: Any = None, tokenizer: Any = None, video_processor: Any = None,
                       **kwargs: Any) -> None:
        if video_processor is None:
            raise TypeError("Qwen2VLProcessor.__init__() missing 1 required positional argument: 'video_processor'")
        init(self, image_processor, tokenizer, video_processor, **kwargs)

    monkeypatch.setattr(transformers.Qwen2VLProcessor, "__init__", requires_video)
    state = MatrixState(MATRIX)
    for probe in ("load", "generate"):
        record = run_cell(state, Cell("qwen2_vl", "explicit_class", "default", probe))
        assert record["status"] == "skipped", record["message"]
        assert record["details"]["needs"] == "torchvision"
        assert record["message"].startswith("needs torchvision: Qwen2VLProcessor requires a video processor; "
                                            "AutoVideoProcessor needs torchvision: TypeError"), record["message"]


def test_every_line_records_the_optional_packages_of_its_environment() -> None:
    import importlib.util

    record = run_cell(MatrixState(MATRIX), Cell("llama", "explicit_class", "default", "load"))
    packages = record["packages"]
    assert {"torchvision", "num2words", "av", "sentencepiece", "protobuf", "tiktoken"} <= set(packages)
    for module in ("torchvision", "num2words", "av", "sentencepiece", "tiktoken"):
        assert packages[module] == (importlib.util.find_spec(module) is not None), module


def test_a_failure_is_put_down_to_a_package_only_on_evidence(hidden_num2words: None) -> None:
    from compat_tests.needs import needed_package

    def raised(error: BaseException, cause: BaseException | None = None) -> BaseException:
        try:
            try:
                if cause is not None:
                    raise cause
            finally:
                raise error
        except BaseException as caught:  # noqa: BLE001
            return caught

    torchvision_message = ("\nSmolVLMVideoProcessor requires the Torchvision library but it was not found in your "
                           "environment. Check out the instructions on the\ninstallation page: ...")
    assert needed_package(ModuleNotFoundError("No module named 'num2words'", name="num2words")).package == "num2words"
    # 5.13-5.17 when no image processor backend imports (seen for SmolVLM and Idefics3 in the history)
    said = ValueError("Could not load any image processor class for /x. The model configuration resolves to the following "
                      "image processor classes: pil: SmolVLMImageProcessorPil, torchvision: SmolVLMImageProcessor. None of "
                      "these classes could be imported. Missing optional dependencies: torchvision. Please install the "
                      "missing dependencies or select a backend that is available in your environment.")
    assert needed_package(said).package == "torchvision"
    assert needed_package(ValueError(str(said).replace("torchvision.", "num2words, torchvision."))).package == "num2words"
    assert needed_package(ImportError("Package `num2words` is required to run SmolVLM processor. Install it with "
                                      "`pip install num2words`.")).package == "num2words"
    assert needed_package(raised(RuntimeError("could not build"), ModuleNotFoundError("x", name="num2words"))) is not None
    # an installed module, a name transformers lost, or a plain error are breaks, not packages
    assert needed_package(ModuleNotFoundError("No module named 'yaml'", name="yaml")) is None
    assert needed_package(ImportError("cannot import name 'Foo' from 'transformers'", name="transformers")) is None
    assert needed_package(ValueError("no vision tower was found")) is None
    assert needed_package(ImportError("`pip install pyyaml` is not needed")) is None
    requires = needed_package(ImportError(torchvision_message))
    assert (requires is not None and requires.package == "torchvision") == (not is_torchvision_available())


@no_torchvision
def test_a_processor_whose_init_reads_its_video_processor_needs_torchvision(monkeypatch: pytest.MonkeyPatch,
                                                                           tmp_path: Any) -> None:
    """transformers 4.52's SmolVLMProcessor reads `video_processor.video_sampling` in __init__, so built or
    read without its video processor it raises AttributeError on None: needs torchvision, as a required
    argument does (5.25). Planted: before, the cells failed ("cannot read the config or processor ...:
    'NoneType' object has no attribute 'video_sampling'"), 4.52.4 reading 4.51.3's SmolVLM."""
    monkeypatch.setenv("COMPAT_MATRIX_CACHE", str(tmp_path))
    init = transformers.Qwen2VLProcessor.__init__

    def reads_video(self: Any, image_processor: Any = None, tokenizer: Any = None, video_processor: Any = None,
                    **kwargs: Any) -> None:
        self.video_sampling = video_processor.video_sampling
        init(self, image_processor, tokenizer, video_processor, **kwargs)

    monkeypatch.setattr(transformers.Qwen2VLProcessor, "__init__", reads_video)
    record = run_cell(MatrixState(MATRIX), Cell("qwen2_vl", "explicit_class", "default", "load"))
    assert record["status"] == "skipped", record["message"]
    assert record["details"]["needs"] == "torchvision"
    assert record["message"].startswith("needs torchvision: Qwen2VLProcessor requires a video processor (its __init__ "
                                        "reads it); AutoVideoProcessor needs torchvision: AttributeError: 'NoneType'"), \
        record["message"]


def test_an_attribute_error_elsewhere_stays_a_failure() -> None:
    """Only the processor's own __init__ reading the None part counts: the same error from other code is not
    put down to a package."""
    from compat_tests.tiny.processors import _reads_its_none_part

    def elsewhere() -> None:
        None.video_sampling  # type: ignore[attr-defined]

    try:
        elsewhere()
    except AttributeError as error:
        assert not _reads_its_none_part(transformers.Qwen2VLProcessor, error)
