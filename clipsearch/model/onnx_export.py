"""Export one CLIP tower to ONNX, check it against open_clip, and only then put it in the cache, atomically.

Run as `python -m clipsearch.model.onnx_export MODEL PRETRAINED text|image|text-int8 FOLDER`
(clipsearch.model.onnx_engine does, in a subprocess). The files are written into a temporary folder beside
FOLDER and renamed into place once checked, so a killed export never leaves files that are used. A tower that
does not match open_clip within TOLERANCE is recorded as unusable, with the reason, so later starts use torch
without exporting again. `text-int8` is made from the text tower's export without torch (torch is imported
only by the towers exported from it).
"""

from __future__ import annotations

import dataclasses
import fcntl
import gc
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime
from PIL import Image

from clipsearch.errors import ClipsearchError, ExportFailed
from clipsearch.model.identity import ModelIdentity, pretrained_label
from clipsearch.model.onnx_engine import (
    EXPORT_LOCK,
    EXPORT_VERSION,
    INT8_AGREEMENT,
    INT8_FILE,
    MANIFEST,
    MODEL_FILE,
    TOLERANCE,
    Export,
    clip_pixels,
    export_folder,
    file_record,
    normalised,
    numpy_reproduces,
    private_folder,
    session,
)
from clipsearch.model.tokenizer import VOCABULARY_FILE, ClipTokenizer
from clipsearch.settings import ModelSpec

if TYPE_CHECKING:
    import torch

    from clipsearch.model.torch_engine import TorchTextEncoder

# Queries the text export is checked on: mixed lengths, one over the 77-token context, empty, non-ASCII.
CHECK_TEXTS = (
    "a dog",
    "",
    "a photo of a golden retriever jumping into a swimming pool on a sunny afternoon",
    "Straße in München bei Nacht, 東京の夜景, café crème 🐶",
    " ".join(["mountains"] * 90),
    "x",
)


def _text_up_to_length(tower: torch.nn.Module) -> torch.nn.Module:
    """The text tower's forward for tokens of any length (torch_engine.text_features_as_long_as), as a module."""
    import torch

    from clipsearch.model.torch_engine import text_features_as_long_as

    class TextUpToLength(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tower = tower

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return text_features_as_long_as(self.tower, tokens)

    return TextUpToLength()


def export_text(model_name: str, pretrained: str, work: Path) -> dict[str, Any]:
    import open_clip
    import torch

    from clipsearch.model.torch_engine import TorchTextEncoder

    encoder = TorchTextEncoder.load(ModelSpec.named(model_name, pretrained), device=torch.device("cpu"))
    manifest = _identity_fields(encoder.identity, "text")
    manifest |= {"logit_scale": encoder.logit_scale, "context_length": encoder.tokenizer.context_length}
    reason = _why_text_not_exportable(encoder)
    if reason:
        return manifest | {"usable": False, "reason": reason}
    shutil.copyfile(open_clip.tokenizer.default_bpe(), work / VOCABULARY_FILE)
    ours = ClipTokenizer(work / VOCABULARY_FILE, encoder.tokenizer.context_length)
    theirs = encoder.tokenizer(list(CHECK_TEXTS))
    if not np.array_equal(ours.padded(CHECK_TEXTS), theirs.numpy()):
        return manifest | {"usable": False, "reason": "clipsearch's tokenizer differs from open_clip's for this model"}
    with torch.inference_mode():
        expected = normalised(encoder.tower(theirs).numpy())  # open_clip's own forward, all 77 tokens
    _export(_text_up_to_length(encoder.tower), theirs[:2, :16], "tokens", (0, 1), work)
    del encoder
    gc.collect()  # torch's tower goes before ONNX Runtime loads the export
    return manifest | _compared(expected, *_check_vectors(work / MODEL_FILE, ours))


def _check_vectors(model_file: Path, tokenizer: ClipTokenizer) -> tuple[np.ndarray, np.ndarray]:
    """An exported text tower's normalised vectors of the check queries: each cut to its own length, and all
    in one padded batch."""
    runtime = session(model_file)
    one_by_one = [normalised(runtime.run(None, {"tokens": tokenizer.padded([text], len(row))})[0])[0]
                  for text, row in zip(CHECK_TEXTS, tokenizer(CHECK_TEXTS), strict=True)]  # fmt: skip
    return np.stack(one_by_one), normalised(runtime.run(None, {"tokens": tokenizer.padded(CHECK_TEXTS)})[0])


def export_text_int8(model_name: str, pretrained: str, work: Path) -> dict[str, Any]:
    """The text tower's export with int8 weights, one scale per output channel, whose activations are quantized
    as each query runs (ONNX Runtime's dynamic quantization); usable where its vectors of the check queries, one
    by one and as a batch, are all at least INT8_AGREEMENT similar to the float32 export's (which are
    open_clip's, within TOLERANCE). Made from that export (onnx_engine.exported makes it first), without torch."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = dataclasses.replace(ModelSpec.named(model_name, pretrained), onnx_cache=work.parent)
    text = Export.find(export_folder(model, "text"), model_name, pretrained_label(pretrained), "text")
    if text is None:
        raise ExportFailed(f"the text tower of {model_name} must be exported before its int8 version")
    manifest = {key: text.manifest[key] for key in ("model", "pretrained", "dim", "logit_scale", "context_length")}
    manifest |= {"version": EXPORT_VERSION, "tower": "text-int8", "onnxruntime": onnxruntime.__version__}
    tokenizer = ClipTokenizer(text.folder / VOCABULARY_FILE, text.manifest["context_length"])
    shutil.copyfile(text.folder / VOCABULARY_FILE, work / VOCABULARY_FILE)
    quantize_dynamic(text.folder / MODEL_FILE, work / INT8_FILE, per_channel=True, weight_type=QuantType.QInt8)
    expected, _ = _check_vectors(text.folder / MODEL_FILE, tokenizer)
    agreement = float(min((got * expected).sum(axis=-1).min() for got in _check_vectors(work / INT8_FILE, tokenizer)))
    if agreement >= INT8_AGREEMENT:
        return manifest | {"usable": True, "min_cosine": agreement}
    return manifest | {
        "usable": False,
        "min_cosine": agreement,
        "reason": f"its vectors are as little as {agreement:.4f} similar to open_clip's (under {INT8_AGREEMENT})",
    }


def _why_text_not_exportable(encoder: TorchTextEncoder) -> str | None:
    import open_clip

    tokenizer = encoder.tokenizer
    if not isinstance(tokenizer, open_clip.tokenizer.SimpleTokenizer) or tokenizer.reduction_fn is not None:
        return f"its tokenizer ({type(tokenizer).__name__}) is not CLIP's plain byte-pair tokenizer"
    if tokenizer.clean_fn is not open_clip.tokenizer._clean_lower or len(tokenizer.encoder) != 49408:
        return "its tokenizer cleans text or adds tokens differently from CLIP's"
    if not encoder.cut_at_end_of_text:
        return "its text tower is not a causal transformer read at the end-of-text token"
    return None


def export_image(model_name: str, pretrained: str, work: Path) -> dict[str, Any]:
    """The image tower alone (encoder.image_tower: the checkpoint memory-mapped, the text weights never read),
    and torch's model gone before ONNX Runtime loads the export: the peak is the larger of the two, not both."""
    import torch
    from open_clip.transform import PreprocessCfg, image_transform_v2

    from clipsearch.model.torch_engine import embed_dim, image_tower

    tower: Any = image_tower(model_name, pretrained)
    manifest = _identity_fields(ModelIdentity(model_name, pretrained_label(pretrained), embed_dim(model_name)), "image")
    preprocess = dict(tower.preprocess_cfg)
    transform = image_transform_v2(PreprocessCfg(**preprocess), is_train=False)
    images = _check_images()
    pixels = [transform(image).numpy() for image in images]
    in_numpy = numpy_reproduces(preprocess) and all(
        np.array_equal(clip_pixels(image, preprocess), expected) for image, expected in zip(images, pixels, strict=True)
    )
    manifest |= {"preprocess": preprocess, "preprocess_in_numpy": in_numpy}
    with torch.inference_mode():
        expected = normalised(tower(torch.from_numpy(np.stack(pixels))).numpy())  # open_clip's encode_image
    _export(tower, torch.from_numpy(np.stack(pixels[:2])), "pixels", (0,), work)
    del tower
    gc.collect()
    runtime = session(work / MODEL_FILE)
    got = np.stack([normalised(runtime.run(None, {"pixels": p[None]})[0])[0] for p in pixels])
    got_batch = normalised(runtime.run(None, {"pixels": np.stack(pixels)})[0])
    return manifest | _compared(expected, got, got_batch)


def _check_images() -> list[Image.Image]:
    """Fixed photos-like images of several shapes and modes: smooth gradients with noise."""
    rng = np.random.default_rng(0)
    images = []
    shapes = ((640, 480, "RGB"), (300, 500, "RGB"), (97, 131, "RGB"), (224, 224, "L"), (400, 300, "RGBA"))
    for width, height, mode in shapes:
        ramp = np.linspace(0, 255, width)[None, :, None] * np.linspace(0.2, 1, height)[:, None, None]
        noisy = np.clip(ramp + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
        images.append(Image.fromarray(noisy).convert(mode))
    return images


def _identity_fields(identity: ModelIdentity, tower: str) -> dict[str, Any]:
    import torch

    return {
        "version": EXPORT_VERSION,
        "model": identity.name,
        "pretrained": identity.pretrained,
        "dim": identity.dim,
        "tower": tower,
        "torch": torch.__version__,
    }


def _export(module: torch.nn.Module, example: torch.Tensor, name: str, dynamic: tuple[int, ...], work: Path) -> None:
    """`module` (one tensor in, one out) as the ONNX graph of work/MODEL_FILE, `dynamic` the input's axes of
    any size; the input is called `name` in the graph."""
    import torch

    shapes = ({axis: torch.export.Dim.DYNAMIC for axis in dynamic},)  # by position: whatever forward calls it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(work / MODEL_FILE),
            input_names=[name],
            output_names=["features"],
            dynamic_shapes=shapes,
            dynamo=True,
            external_data=True,
            verbose=False,
        )


def _compared(expected: np.ndarray, one_by_one: np.ndarray, batched: np.ndarray) -> dict[str, Any]:
    difference = float(max(np.abs(one_by_one - expected).max(), np.abs(batched - expected).max()))
    if difference <= TOLERANCE:
        return {"usable": True, "max_difference": difference}
    return {
        "usable": False,
        "max_difference": difference,
        "reason": f"its vectors differ from open_clip's by up to {difference:.2g} (over {TOLERANCE:g})",
    }


def export(model_name: str, pretrained: str, tower: str, folder: Path) -> None:
    """Export `tower` into `folder`, replacing what is there; nothing is in `folder` until it is complete.

    One export at a time in the cache folder, whatever the tower (a lock there): each takes hundreds of
    megabytes, and two at once could take what a small container has. A process that waited finds the
    other's export of the same folder and keeps it; the work folders of exports that were killed are removed.
    """
    private_folder(folder.parent)
    with open(folder.parent / EXPORT_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for leftover in folder.parent.glob(f".{folder.name}.*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
        if Export.find(folder, model_name, pretrained_label(pretrained), tower) is not None:
            return
        work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            manifest = TOWERS[tower](model_name, pretrained, work)
            manifest["files"] = {path.name: file_record(path) for path in sorted(work.iterdir())}
            (work / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
            _sync(work)
            _replace(work, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _sync(folder: Path) -> None:
    for path in folder.iterdir():
        with path.open("rb") as handle:
            os.fsync(handle.fileno())


def _replace(work: Path, folder: Path) -> None:
    """Put the finished export in place in one rename; an older one (stale or broken) is moved aside first."""
    if folder.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
        os.rename(folder, old / "export")
        shutil.rmtree(old, ignore_errors=True)
    os.rename(work, folder)


TOWERS: dict[str, Callable[[str, str, Path], dict[str, Any]]] = {
    "text": export_text,
    "image": export_image,
    "text-int8": export_text_int8,
}


def main(argv: list[str]) -> int:
    try:
        model_name, pretrained, tower, folder = argv
    except ValueError:
        print(
            "usage: python -m clipsearch.model.onnx_export MODEL PRETRAINED text|image|text-int8 FOLDER",
            file=sys.stderr,
        )
        return 64
    if tower not in TOWERS:
        print(f"ValueError: tower {tower!r}: choose " + ", ".join(TOWERS), file=sys.stderr)
        return 64
    try:
        export(model_name, pretrained, tower, Path(folder))
    except ClipsearchError as error:  # the last line of stderr, for the parent to raise again
        print(json.dumps({"error": type(error).__name__, "message": str(error)}), file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
