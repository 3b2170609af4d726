"""Per-family processors sized from the tiny model config, and loading one back from a folder.

Each builder reads the patch size, image size and token counts from the model config, so that the
processor inserts exactly as many image tokens as the tiny model's vision tower produces.
Video processors need torchvision, which has no wheel for CPU torch on PyPI: without it the
family's processor is built and loaded with no video processor (images are all we feed).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import transformers
from transformers.utils import is_torchvision_available

from compat_tests.needs import MissingPackage, Need, missing_parts, needed_package, processor_need, processor_parts

Built = tuple[Any, int]
"""A processor and the side in pixels of the square test image it expects."""


def _without_video(cls: Any) -> Any:
    """`cls` with its video processor left out; same name, so it saves as `cls` does."""
    attributes = [a for a in processor_parts(cls) if a != "video_processor"]

    def from_args_and_dict(sub: Any, args: list[Any], processor_dict: dict[str, Any], **kwargs: Any) -> Any:
        # Some releases make video_processor a required argument of __init__ (SmolVLM in 5.x).
        return super(sub, sub).from_args_and_dict(args, {**processor_dict, "video_processor": None}, **kwargs)

    return type(cls.__name__, (cls,), {"__module__": cls.__module__, "attributes": attributes,
                                       "get_attributes": classmethod(lambda _: list(attributes)),
                                       "from_args_and_dict": classmethod(from_args_and_dict)})


def processor_class(name: str) -> Any:
    """`transformers.<name>`, or an ImportError that says which release cannot import it and why."""
    try:
        return getattr(transformers, name)
    except (ImportError, RuntimeError) as error:
        cause = error.__cause__ or error
        raise ImportError(f"transformers {transformers.__version__} cannot import {name}: "
                          f"{type(cause).__name__}: {cause}") from error


def _video_unavailable(cls: Any) -> bool:
    """The class has a video processor part that this environment cannot build: its class is a
    placeholder for a missing backend, or torchvision (which every video processor uses) is missing."""
    return "video_processor" in processor_parts(cls) and ("video_processor" in missing_parts(cls)
                                                          or not is_torchvision_available())


@contextmanager
def _why_missing(cls: Any) -> Iterator[None]:
    """A failure that a missing package explains (compat_tests/needs.py) is raised as MissingPackage."""
    try:
        yield
    except Exception as error:
        need = processor_need(cls, error) if cls is not None else needed_package(error)
        if need is None or isinstance(error, MissingPackage):
            raise
        raise MissingPackage(need) from error


def _reads_its_none_part(cls: Any, error: BaseException) -> bool:
    """`error` is the processor's own __init__ reading an attribute of None: the part we left out."""
    if not isinstance(error, AttributeError) or "NoneType" not in str(error):
        return False
    tb = error.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    inits = {getattr(c.__dict__.get("__init__"), "__code__", None) for c in cls.__mro__}
    return tb is not None and tb.tb_frame.f_code in inits


@contextmanager
def _needs_its_video_part(cls: Any) -> Iterator[None]:
    """Building `cls` without the video processor this environment cannot build: an __init__ that reads the
    None it got (SmolVLM's in 4.52, `video_processor.video_sampling`) needs that part's backend, as a
    required argument does (5.25): a missing package, not a break."""
    try:
        yield
    except AttributeError as error:
        if not _reads_its_none_part(cls, error):
            raise
        backends = missing_parts(cls).get("video_processor") or ["torchvision"]
        raise MissingPackage(Need(backends[0], f"{cls.__name__} requires a video processor (its __init__ reads it); "
                                               f"AutoVideoProcessor needs {', '.join(backends)}: "
                                               f"AttributeError: {error}")) from error


def _processor(name: str, video: Callable[[], Any], **parts: Any) -> Any:
    """Instantiate `transformers.<name>`, with `video()` as its video processor where it has one and
    this environment can build it, else without one (images are all we feed)."""
    cls = processor_class(name)
    with _why_missing(cls):
        if "video_processor" not in processor_parts(cls):
            return cls(**parts)
        if not _video_unavailable(cls):
            return cls(video_processor=video(), **parts)
        with _needs_its_video_part(cls):
            return _without_video(cls)(video_processor=None, **parts)


def qwen_vl(name: str, video_class: str, **image_kwargs: Any) -> Callable[[Any, Any], Built]:
    """Qwen2-VL style: a fixed pixel budget of (patch * merge * 2)^2 gives a 4x4 patch grid, 4 tokens.

    `image_kwargs` (normalisation) differ between generations of the family.
    """

    def build(tokenizer: Any, config: Any) -> Built:
        vision = config.vision_config
        side = vision.patch_size * vision.spatial_merge_size * 2
        sizing = {"patch_size": vision.patch_size, "merge_size": vision.spatial_merge_size,
                  "temporal_patch_size": vision.temporal_patch_size,
                  "size": {"shortest_edge": side * side, "longest_edge": side * side}, **image_kwargs}
        image_processor = transformers.Qwen2VLImageProcessor(**sizing)
        image_processor.min_pixels = image_processor.max_pixels = side * side
        processor = _processor(name, video=lambda: getattr(transformers, video_class)(**sizing),
                               image_processor=image_processor, tokenizer=tokenizer,
                               chat_template=tokenizer.chat_template)
        return processor, side

    return build


def gemma3(tokenizer: Any, config: Any) -> Built:
    """Gemma 3: the image is resized to the vision tower's size; `mm_tokens_per_image` soft tokens."""
    side = config.vision_config.image_size
    image_processor = transformers.Gemma3ImageProcessor(size={"height": side, "width": side})
    return transformers.Gemma3Processor(image_processor=image_processor, tokenizer=tokenizer,
                                        chat_template=tokenizer.chat_template,
                                        image_seq_length=config.mm_tokens_per_image), side


def llava(tokenizer: Any, config: Any) -> Built:
    """LLaVA 1.5: CLIP resize + crop; one token per patch (the CLS token dropped by `default`)."""
    vision = config.vision_config
    side = vision.image_size
    image_processor = transformers.CLIPImageProcessor(size={"shortest_edge": side},
                                                      crop_size={"height": side, "width": side})
    return transformers.LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                       patch_size=vision.patch_size,
                                       vision_feature_select_strategy=config.vision_feature_select_strategy,
                                       chat_template=tokenizer.chat_template, image_token="<image>",
                                       num_additional_image_tokens=1), side


def _idefics_sizing(config: Any) -> tuple[int, dict[str, Any], int]:
    """Idefics3 / SmolVLM without image splitting: the side, the image processor's sizes, and the tokens
    of the one global image (patches / scale_factor^2)."""
    vision = config.vision_config
    side = vision.image_size
    sizing: dict[str, Any] = {"size": {"longest_edge": side}, "max_image_size": {"longest_edge": side}}
    return side, sizing, (side // vision.patch_size) ** 2 // config.scale_factor**2


def idefics3(tokenizer: Any, config: Any) -> Built:
    """Idefics3: one global image, no splitting; no video processor (SmolVLM added it)."""
    side, sizing, seq_len = _idefics_sizing(config)
    image_processor = transformers.Idefics3ImageProcessor(do_image_splitting=False, **sizing)
    return transformers.Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=seq_len,
                                          chat_template=tokenizer.chat_template), side


def smolvlm(tokenizer: Any, config: Any) -> Built:
    """SmolVLM: as Idefics3, with a video processor where torchvision allows one."""
    side, sizing, seq_len = _idefics_sizing(config)
    image_processor: Any = transformers.SmolVLMImageProcessor(do_image_splitting=False, **sizing)
    # As in the hub's preprocessor_config.json; 4.51's processor reads it from the image processor.
    image_processor.video_sampling = {"fps": 1, "max_frames": 4, "video_size": {"longest_edge": side}}
    processor = _processor("SmolVLMProcessor", video=lambda: getattr(transformers, "SmolVLMVideoProcessor")(**sizing),
                           image_processor=image_processor, tokenizer=tokenizer, image_seq_len=seq_len,
                           chat_template=tokenizer.chat_template)
    return processor, side


def mllama(tokenizer: Any, config: Any) -> Built:
    """Llama 3.2 Vision: a square image at the vision tower's size is one tile (of `max_num_tiles`, padded)."""
    vision = config.vision_config
    side = vision.image_size
    image_processor = transformers.MllamaImageProcessor(size={"height": side, "width": side},
                                                        max_image_tiles=vision.max_num_tiles)
    return transformers.MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        chat_template=tokenizer.chat_template), side


def _side(value: int | list[int]) -> int:
    """A square size given as an int or as [height, width] (InternVL's vision config)."""
    return value if isinstance(value, int) else value[0]


def internvl(tokenizer: Any, config: Any) -> Built:
    """InternVL (-hf): the image is one crop at the vision tower's size; each crop gives
    patches x downsample_ratio^2 tokens (pixel shuffle)."""
    vision = config.vision_config
    side = _side(vision.image_size)
    seq_len = int((side // _side(vision.patch_size)) ** 2 * config.downsample_ratio**2)
    sizing = {"size": {"height": side, "width": side}}
    image_processor = transformers.GotOcr2ImageProcessor(crop_to_patches=False, **sizing)
    processor = _processor("InternVLProcessor", video=lambda: getattr(transformers, "InternVLVideoProcessor")(**sizing),
                           image_processor=image_processor, tokenizer=tokenizer, image_seq_length=seq_len,
                           chat_template=tokenizer.chat_template)
    return processor, side


def paligemma(tokenizer: Any, config: Any) -> Built:
    """PaliGemma (pt): SigLIP resize; one token per patch; no chat template, as on the hub."""
    vision = config.vision_config
    side = vision.image_size
    image_processor: Any = transformers.SiglipImageProcessor(size={"height": side, "width": side})
    image_processor.image_seq_length = (side // vision.patch_size) ** 2
    return transformers.PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer), side


def _processor_class_name(path: Path) -> str | None:
    """The processor class a checkpoint folder names, wherever the release that saved it put it."""
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        file = path / name
        if file.is_file():
            found = json.loads(file.read_text()).get("processor_class")
            if found:
                return str(found)
    return None


def load_processor(path: Path) -> tuple[Any, str]:
    """`AutoProcessor.from_pretrained(path)`, or the named class without video where this environment
    cannot build its video processor. Returns the processor and the route taken (people read it in the report)."""
    name = _processor_class_name(path)
    cls = processor_class(name) if name else None
    with _why_missing(cls):
        if cls is not None and _video_unavailable(cls):
            with _needs_its_video_part(cls):
                return _without_video(cls).from_pretrained(path), f"{name} without video processor (no torchvision)"
        return transformers.AutoProcessor.from_pretrained(path), "AutoProcessor"
