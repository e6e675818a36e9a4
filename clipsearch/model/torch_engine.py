"""CLIP through open_clip and torch: its own preprocess and tokenizer, L2-normalised float32 vectors.

The torch engine; clipsearch.model.onnx_engine runs the same towers through ONNX Runtime, and
clipsearch.model.engine chooses between them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Self

import numpy as np
import open_clip
import torch
from open_clip.factory import load_state_dict
from PIL import Image

from clipsearch.errors import ConfigError, WeightsUnavailable
from clipsearch.model.identity import ModelIdentity, pretrained_label
from clipsearch.settings import ModelSpec


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class TorchEncoder:
    """The load path both encoders share: names checked, identity computed once, tokenizer, device.

    Subclasses load their weights in __init__; `load` is the way to make one.
    """

    logit_scale: float = 100.0  # CLIP's usual scale, for checkpoints that do not carry one
    precision = "float32"  # (CLIPSEARCH_TEXT_PRECISION=int8 is the ONNX engine's)

    def __init__(self, model_name: str, pretrained: str, device: torch.device) -> None:
        check_names(model_name, pretrained)
        self.model_name = model_name
        self.pretrained = pretrained
        self.device = device
        self.identity = ModelIdentity(model_name, pretrained_label(pretrained), embed_dim(model_name))
        self.tokenizer = open_clip.get_tokenizer(model_name)

    @classmethod
    def load(cls, model: ModelSpec, *, device: torch.device | None = None) -> Self:
        """Load the model with its weights; refuses to fall back to random weights."""
        return cls(model.model_name, model.pretrained, device or pick_device())

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        return _normalised(self._text_features(self.tokenizer(list(texts)).to(self.device)))

    def _text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class TorchImageEncoder(TorchEncoder):
    """The whole model: photos and text."""

    def __init__(self, model_name: str, pretrained: str, device: torch.device) -> None:
        super().__init__(model_name, pretrained, device)
        try:
            self.model, _, self.preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=pretrained, device=device
            )
        except (RuntimeError, OSError) as error:
            raise WeightsUnavailable(weights_help(model_name, pretrained, error)) from None
        self.model.eval()
        self.logit_scale = float(self.model.logit_scale.detach().exp())
        self.input_side = _largest_side(self.model.visual.preprocess_cfg["size"])

    @classmethod
    def load(cls, model: ModelSpec, batches: bool = False, *, device: torch.device | None = None) -> Self:
        """As the ONNX engine's: `batches` tunes nothing here (torch runs a batch as it runs one photo)."""
        return super().load(model, device=device)

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        """open_clip's own transform; thread-safe, so loaders may run it in worker threads."""
        tensor: torch.Tensor = self.preprocess(image)
        return tensor.numpy()

    @torch.inference_mode()
    def encode_pixels(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        batch = torch.from_numpy(np.stack(pixels)).to(self.device)
        return _normalised(self.model.encode_image(batch))

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_pixels([self.preprocess_image(image) for image in images])

    def _text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = self.model.encode_text(tokens)
        return features


class TorchTextEncoder(TorchEncoder):
    """Only the text tower: what a text search needs, at about 40% of the full model's memory.

    The checkpoint is memory-mapped and the tower's weights are the mapped tensors themselves, so only
    the text weights are ever read from disk, and the vision weights never take memory. A query runs
    only up to its end-of-text token (see _cut_at_end_of_text).
    """

    def __init__(self, model_name: str, pretrained: str, device: torch.device) -> None:
        super().__init__(model_name, pretrained, device)
        state = _mapped_state_dict(checkpoint_file(model_name, pretrained))
        tower = _text_tower(open_clip.get_model_config(model_name), state)
        if "logit_scale" in state:
            self.logit_scale = float(state["logit_scale"].exp())
        del state
        if tower is None:  # a text tower open_clip builds some other way: take it from the full model
            tower = ModelMethod(TorchImageEncoder(model_name, pretrained, device).model, "encode_text")
        self.tower = tower.to(device).eval()
        self.cut_at_end_of_text = ends_at_end_of_text(self.tower)

    def _text_features(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.cut_at_end_of_text:
            return _cut_at_end_of_text(self.tower, tokens)
        features: torch.Tensor = self.tower(tokens)
        return features


def ends_at_end_of_text(tower: torch.nn.Module) -> bool:
    """Whether the tower is open_clip's causal TextTransformer pooling at the end-of-text token: then
    nothing after that token can change the output."""
    return (
        isinstance(tower, open_clip.transformer.TextTransformer)
        and tower.pool_type == "argmax"
        and tower.cls_emb is None
        and tower.attn_mask is not None
        and not tower.use_pad_mask
        and not tower.output_tokens
    )


def _cut_at_end_of_text(tower: Any, tokens: torch.Tensor) -> torch.Tensor:
    """TextTransformer.forward on the tokens up to the batch's last end-of-text token only.

    Every query is padded to 77 tokens, but under the causal mask a token attends only to those before
    it, and the output is read at the end-of-text token (the argmax): the padding after it is work
    whose result is thrown away. A typical query is under 16 tokens.
    """
    length = int(tokens.argmax(dim=-1).max()) + 1
    return text_features_as_long_as(tower, tokens[:, :length])


def text_features_as_long_as(tower: Any, tokens: torch.Tensor) -> torch.Tensor:
    """TextTransformer.forward for tokens of any length up to the context: the positions and the causal
    mask are cut to the tokens'. The ONNX export traces this, with the length a dynamic dimension."""
    length = tokens.shape[1]
    cast_dtype = tower.transformer.get_cast_dtype()
    x = tower.token_embedding(tokens).to(cast_dtype) + tower.positional_embedding[:length].to(cast_dtype)
    x = tower.ln_final(tower.transformer(x, attn_mask=tower.attn_mask[:length, :length]))
    pooled = open_clip.transformer.text_global_pool(x, tokens, pool_type="argmax")
    if isinstance(tower.text_projection, torch.nn.Linear):
        features: torch.Tensor = tower.text_projection(pooled)
        return features
    projected: torch.Tensor = pooled @ tower.text_projection
    return projected


class ModelMethod(torch.nn.Module):
    """One method of an open_clip model (encode_text) as a module of its own: a text tower that open_clip builds
    only inside the whole model."""

    def __init__(self, model: Any, method: str) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        features: torch.Tensor = getattr(self.model, self.method)(inputs)
        return features


def check_names(model_name: str, pretrained: str) -> None:
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


def checkpoint_file(model_name: str, pretrained: str) -> str:
    """The local file holding the weights, downloaded (and cached) by open_clip for a tag."""
    if os.path.isfile(pretrained):
        return pretrained
    try:
        return str(open_clip.download_pretrained(open_clip.get_pretrained_cfg(model_name, pretrained)))
    except Exception as error:  # huggingface_hub and urllib raise many kinds
        raise WeightsUnavailable(weights_help(model_name, pretrained, error)) from None


class _LazyTensors(Mapping[str, torch.Tensor]):
    """A safetensors file's tensors, each read only when asked for."""

    def __init__(self, path: str) -> None:
        from safetensors import safe_open

        self.file = safe_open(path, framework="pt", device="cpu")
        self.names: list[str] = list(self.file.keys())  # type: ignore[no-untyped-call]

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.names:
            raise KeyError(name)
        tensor: torch.Tensor = self.file.get_tensor(name)  # type: ignore[no-untyped-call]
        return tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def _mapped_state_dict(path: str) -> Mapping[str, torch.Tensor]:
    """The checkpoint's tensors without reading them all: memory-mapped, or lazily from safetensors."""
    if path.endswith(".safetensors"):
        return _LazyTensors(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # a checkpoint in torch's legacy (not zip) format cannot be mapped
        return dict(load_state_dict(path))
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else checkpoint
    if next(iter(state), "").startswith("module."):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return dict(state)


def _text_tower(model_cfg: dict[str, Any], state: Mapping[str, torch.Tensor]) -> torch.nn.Module | None:
    """open_clip's own text tower with the checkpoint's weights, or None if the keys do not fit.

    The tower is built without memory (on the meta device) and takes the checkpoint's tensors as its
    own (assign), so a memory-mapped checkpoint is neither copied nor read beyond the text weights.
    """
    text_cfg = model_cfg["text_cfg"]
    if text_cfg.get("hf_model_name"):
        return None
    with torch.device("meta"):
        tower: Any = open_clip.model._build_text_tower(
            model_cfg["embed_dim"], text_cfg, quick_gelu=model_cfg.get("quick_gelu", False)
        )
    prefix = "text." if any(key.startswith("text.") for key in state) else ""
    if not _assign(tower, state, prefix):
        return None
    if getattr(tower, "attn_mask", None) is not None:  # a buffer made in __init__, so still on meta
        tower.attn_mask = tower.build_causal_mask()
    return None if _on_meta(tower) else tower


def image_tower(model_name: str, pretrained: str) -> torch.nn.Module:
    """open_clip's image tower (model.visual, with its preprocess_cfg) and nothing else: built on the meta
    device, its weights the memory-mapped checkpoint's own tensors, so that only those are ever read (an
    ONNX export of it then needs a fraction of the whole model's memory). The whole model is loaded for a
    checkpoint whose keys do not fit."""
    check_names(model_name, pretrained)
    state = _mapped_state_dict(checkpoint_file(model_name, pretrained))
    with torch.device("meta"):  # open_clip's own factory, for the same tower and preprocess configuration
        model = open_clip.create_model(model_name, pretrained, load_weights=False, device="meta")
    tower: torch.nn.Module = model.visual
    if not _assign(tower, state, "visual.") or _on_meta(tower):
        tower = TorchImageEncoder(model_name, pretrained, torch.device("cpu")).model.visual
    return tower.eval()


def _assign(tower: torch.nn.Module, state: Mapping[str, torch.Tensor], prefix: str) -> bool:
    """Make the checkpoint's tensors under `prefix` the tower's own (no copy); False if the keys differ."""
    wanted = set(tower.state_dict())
    found = {
        key.removeprefix(prefix): key for key in state if key.startswith(prefix) and key.removeprefix(prefix) in wanted
    }
    if set(found) != wanted:
        logging.getLogger(__name__).info(
            "%s keys differ from the checkpoint's; loading the full model", prefix or "tower"
        )
        return False
    tower.load_state_dict({name: state[key] for name, key in found.items()}, strict=True, assign=True)
    return True


def _on_meta(tower: torch.nn.Module) -> bool:
    """Whether any tensor of the tower was left without data."""
    return any(tensor.is_meta for tensor in [*tower.parameters(), *tower.buffers()])


def _largest_side(size: int | Sequence[int]) -> int:
    return size if isinstance(size, int) else max(size)


def embed_dim(model_name: str) -> int:
    return int(open_clip.get_model_config(model_name)["embed_dim"])


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
        f"cannot load the weights of CLIP model {model_name} with pretrained tag {pretrained!r}: "
        f"{str(error).rstrip('.')}. "
        "open_clip downloads them on first use, which needs network access to the Hugging Face Hub. "
        f"Without it, fetch them elsewhere from {source}, copy the file to this machine and set "
        "CLIPSEARCH_PRETRAINED=/path/to/that/file (keep CLIPSEARCH_MODEL the same)."
    )
