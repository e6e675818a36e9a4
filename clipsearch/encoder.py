"""CLIP through open_clip: its own preprocess and tokenizer, L2-normalised float32 vectors."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from PIL import Image

from clipsearch.errors import ConfigError, WeightsUnavailable
from clipsearch.store import ModelIdentity


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pretrained_label(pretrained: str) -> str:
    """How a checkpoint is named in the index: a tag as is, a local file by its file name.

    The file name, not the full path, so that an index built on a laptop is still recognised by
    the same checkpoint stored elsewhere (Streamlit Cloud, another user).
    """
    return Path(pretrained).name if os.path.isfile(pretrained) else pretrained


@dataclass
class ClipEncoder:
    model_name: str
    pretrained: str
    model: Any
    preprocess: Any
    tokenizer: Any
    device: torch.device

    @classmethod
    def load(cls, model_name: str, pretrained: str, device: torch.device | None = None) -> ClipEncoder:
        """Load the model with its weights; refuses to fall back to random weights."""
        device = device or pick_device()
        if model_name not in open_clip.list_models():
            raise ConfigError(
                f"CLIPSEARCH_MODEL={model_name!r} is not an open_clip model; try ViT-B-32, ViT-B-16 or ViT-L-14"
            )
        known_tags = open_clip.list_pretrained_tags_by_model(model_name)
        if pretrained not in known_tags and not os.path.isfile(pretrained):
            raise ConfigError(
                f"CLIPSEARCH_PRETRAINED={pretrained!r} is neither a pretrained tag of {model_name} "
                f"({', '.join(known_tags) or 'none'}) nor an existing checkpoint file"
            )
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained, device=device
            )
        except (RuntimeError, OSError) as error:
            raise WeightsUnavailable(weights_help(model_name, pretrained, error)) from None
        model.eval()
        return cls(model_name, pretrained, model, preprocess, open_clip.get_tokenizer(model_name), device)

    @property
    def dim(self) -> int:
        return int(open_clip.get_model_config(self.model_name)["embed_dim"])

    @property
    def identity(self) -> ModelIdentity:
        return ModelIdentity(self.model_name, pretrained_label(self.pretrained), self.dim)

    def preprocess_image(self, image: Image.Image) -> torch.Tensor:
        """open_clip's own transform; thread-safe, so loaders may run it in worker threads."""
        return self.preprocess(image)

    @torch.inference_mode()
    def encode_pixels(self, pixels: Sequence[torch.Tensor]) -> np.ndarray:
        batch = torch.stack(list(pixels)).to(self.device)
        return _normalised(self.model.encode_image(batch))

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_pixels([self.preprocess_image(image) for image in images])

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return _normalised(self.model.encode_text(tokens))


def _normalised(features: torch.Tensor) -> np.ndarray:
    features = torch.nn.functional.normalize(features.float(), dim=-1)
    return features.cpu().numpy().astype(np.float32, copy=False)


def weights_help(model_name: str, pretrained: str, error: BaseException) -> str:
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
    source = cfg.get("hf_hub") or cfg.get("url") or "its open_clip release"
    if source.endswith("/"):
        source = f"https://huggingface.co/{source.rstrip('/')} (file open_clip_pytorch_model.bin)"
    logging.getLogger(__name__).debug("weights load failed", exc_info=error)
    return (
        f"cannot load the weights of CLIP model {model_name} with pretrained tag {pretrained!r}: {error}. "
        "open_clip downloads them on first use, which needs network access to the Hugging Face Hub. "
        f"Without it, fetch them elsewhere from {source}, copy the file to this machine and set "
        "CLIPSEARCH_PRETRAINED=/path/to/that/file (keep CLIPSEARCH_MODEL the same)."
    )
