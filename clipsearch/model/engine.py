"""Which engine runs CLIP: ONNX Runtime (CPU) or torch, chosen once for the loader, CLI and page alike.

`auto` takes ONNX Runtime on a machine without an NVIDIA GPU (faster and smaller there, and a text search
then never imports torch) and torch on one with a GPU. Nothing here imports torch: the engine's own module
is imported only once it is chosen.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
from PIL import Image

from clipsearch.model.identity import ModelIdentity, pretrained_label

if TYPE_CHECKING:
    from clipsearch.settings import ModelSpec


class ModelEncoding(Protocol):
    """Anything that makes vectors of a known model: what an index is checked against."""

    @property
    def identity(self) -> ModelIdentity: ...

    @property
    def precision(self) -> str:
        """The weights' precision: float32, or int8 for a text tower quantized (CLIPSEARCH_TEXT_PRECISION)."""
        ...


class TextEncoding(ModelEncoding, Protocol):
    """Anything that turns text into vectors of a known model: what a text search and label ranking need."""

    @property
    def logit_scale(self) -> float: ...

    def encode_text(self, texts: Sequence[str]) -> np.ndarray: ...


class ImageEncoding(ModelEncoding, Protocol):
    """Anything that turns photos into vectors of a known model: what the loader and a photo query need.

    preprocess_image is thread-safe (the loader runs it in worker threads) and encode_pixels takes a batch
    of its outputs; input_side is the side of the square the model sees, in pixels.
    """

    @property
    def input_side(self) -> int: ...

    def preprocess_image(self, image: Image.Image) -> np.ndarray: ...

    def encode_pixels(self, pixels: Sequence[np.ndarray]) -> np.ndarray: ...

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray: ...


def model_identity(model: ModelSpec) -> ModelIdentity | None:
    """The identity of the model without loading it (nor torch): the dimension from open_clip's own
    model configuration file. None for a model open_clip defines some other way: then load it."""
    spec = importlib.util.find_spec("open_clip")  # finds the package without importing it (and torch)
    if spec is None or not spec.submodule_search_locations:
        return None
    config = Path(spec.submodule_search_locations[0], "model_configs", f"{model.model_name}.json")
    try:
        dim = int(json.loads(config.read_text(encoding="utf-8"))["embed_dim"])
    except (OSError, ValueError, KeyError):
        return None
    return ModelIdentity(model.model_name, pretrained_label(model.pretrained), dim)


def has_nvidia_gpu() -> bool:
    """An NVIDIA driver is loaded: where torch runs CLIP on the GPU. Asked without importing torch."""
    return os.path.exists("/proc/driver/nvidia/version")


def uses_onnx(model: ModelSpec) -> bool:
    return model.engine == "onnx" or (model.engine == "auto" and not has_nvidia_gpu())


def load_text_encoder(model: ModelSpec) -> TextEncoding:
    """The text tower for the model, on the chosen engine (exported to ONNX first if need be)."""
    encoder: TextEncoding = _load(model, "text")
    return encoder


def load_image_encoder(model: ModelSpec, batches: bool = False) -> ImageEncoding:
    """The image tower for the model, on the chosen engine (exported to ONNX first if need be); with
    `batches`, tuned for the loader's batches of photos rather than for queries one at a time."""
    encoder: ImageEncoding = _load(model, "image", batches)
    return encoder


def _load(model: ModelSpec, tower: str, batches: bool = False) -> Any:
    if uses_onnx(model):
        from clipsearch.model import onnx_engine

        try:
            if tower == "text":
                return onnx_engine.OnnxTextEncoder.load(model)
            return onnx_engine.OnnxImageEncoder.load(model, batches)
        except onnx_engine.OnnxUnusable as reason:
            _fall_back(model, reason)
    from clipsearch.model import torch_engine

    if tower == "text":
        return torch_engine.TorchTextEncoder.load(model)
    return torch_engine.TorchImageEncoder.load(model, batches)


def _fall_back(model: ModelSpec, reason: Exception) -> None:
    logging.getLogger(__name__).warning(
        "CLIPSEARCH_ENGINE=%s: ONNX Runtime is not used for %s / %s: %s; running it with torch",
        model.engine,
        model.model_name,
        model.pretrained,
        reason,
    )
