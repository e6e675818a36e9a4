"""CLIP's towers through ONNX Runtime, from exports cached on disk: no torch in this process.

A tower is exported once per model identity (model, pretrained tag or checkpoint fingerprint, EXPORT_VERSION)
by clipsearch.model.onnx_export, in a subprocess, so that a process that only searches never imports torch. The
export checks the ONNX model against open_clip before it is kept; every load checks the files against the
sizes and SHA-256 sums the export recorded, and exports again when they differ.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import onnxruntime
from PIL import Image

from clipsearch import errors
from clipsearch.errors import ClipsearchError, ExportFailed
from clipsearch.model.identity import ModelIdentity, pretrained_label
from clipsearch.model.tokenizer import VOCABULARY_FILE, ClipTokenizer
from clipsearch.settings import ModelSpec

EXPORT_VERSION = 1  # bump when the exported graphs or the manifest change: older exports are then rebuilt
MANIFEST = "manifest.json"
MODEL_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"  # the text tower with int8 weights (onnx_export.export_text_int8)
TOLERANCE = 1e-5  # largest difference from open_clip's normalised vectors an export may have
# Smallest cosine similarity between the int8 text tower's vectors and open_clip's, on the export's check
# queries, for the int8 tower to be used (docs/engine.md: what it changes in the rankings).
INT8_AGREEMENT = 0.99
EXPORT_TIMEOUT_S = 1800
# What an export's subprocess takes at its peak, rounded up (docs/public-app.md): making the int8 text tower
# holds several copies of the float32 graph at once.
EXPORT_MEMORY_MB = {"text": 700, "image": 700, "text-int8": 1100}
EXPORT_LOCK = ".export.lock"  # in the cache folder: one export at a time, whatever the tower or the process

logger = logging.getLogger(__name__)


class OnnxUnusable(Exception):
    """ONNX Runtime cannot run this model as open_clip does: the caller uses torch instead."""


def export_folder(model: ModelSpec, tower: str) -> Path:
    """The cache folder of one tower of one model identity."""
    label = pretrained_label(model.pretrained)
    key = hashlib.sha256(json.dumps([EXPORT_VERSION, model.model_name, label, tower]).encode()).hexdigest()[:16]
    return model.onnx_cache / f"{re.sub(r'[^A-Za-z0-9.-]', '_', model.model_name)}-{tower}-{key}"


@dataclass(frozen=True)
class Export:
    """A tower's exported files and what the export recorded of them (manifest.json)."""

    folder: Path
    manifest: dict[str, Any]

    @classmethod
    def find(cls, folder: Path, model_name: str, label: str, tower: str) -> Export | None:
        """The export in `folder` if it is whole and of this identity; None (and why, logged) if not."""
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as error:
            logger.warning("ONNX cache %s: unreadable manifest (%s); exporting again", folder, error)
            return None
        expected = {"version": EXPORT_VERSION, "model": model_name, "pretrained": label, "tower": tower}
        if not isinstance(manifest, dict) or any(manifest.get(k) != v for k, v in expected.items()):
            logger.warning("ONNX cache %s: made for another model or clipsearch version; exporting again", folder)
            return None
        for name, recorded in manifest.get("files", {}).items():
            problem = _file_problem(folder / name, recorded)
            if problem:
                logger.warning("ONNX cache %s: %s %s; exporting again", folder, name, problem)
                return None
        return cls(folder, manifest)

    def usable(self) -> Self:
        if not self.manifest.get("usable"):
            raise OnnxUnusable(self.manifest.get("reason", "the export was not usable"))
        return self


def file_record(path: Path) -> dict[str, Any]:
    """What an export records of each of its files, and what every load checks again: size and SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def _file_problem(path: Path, recorded: dict[str, Any]) -> str | None:
    try:
        if path.stat().st_size != recorded["size"]:
            return "has another size than exported"
        found = file_record(path)
    except OSError as error:
        return f"cannot be read ({error.strerror})"
    return None if found["sha256"] == recorded["sha256"] else "has changed since it was exported"


def exported(model: ModelSpec, tower: str) -> Export:
    """The cached export of `tower` ("text", "image" or "text-int8") for the model, exporting it first if need be.

    The export runs in a subprocess (with torch, tens of seconds, once): this process stays torch-free.
    Errors a user must act on (unknown model, weights unavailable) come back as themselves.
    """
    folder = export_folder(model, tower)
    label = pretrained_label(model.pretrained)
    found = Export.find(folder, model.model_name, label, tower)
    if found is None:
        logger.warning("exporting the %s tower of %s / %s to ONNX (once): %s", tower, model.model_name, label, folder)
        _run_export(model, tower, folder)
        found = Export.find(folder, model.model_name, label, tower)
        if found is None:
            raise OnnxUnusable(f"the export left no usable model in {folder}")
    return found.usable()


def _run_export(model: ModelSpec, tower: str, folder: Path) -> None:
    command = [sys.executable, "-m", "clipsearch.model.onnx_export"]
    command += [model.model_name, model.pretrained, tower, str(folder)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=EXPORT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise ExportFailed(
            f"exporting the {tower} tower of {model.model_name} took over {EXPORT_TIMEOUT_S} s"
        ) from None
    if done.returncode == 0:
        return
    if done.returncode < 0:  # a signal: the kernel's OOM killer sends SIGKILL
        raise ExportFailed(
            f"exporting the {tower} tower of {model.model_name} was killed by signal {-done.returncode} "
            f"({signal.Signals(-done.returncode).name}), most likely for lack of memory: it needs about "
            f"{EXPORT_MEMORY_MB[tower]} MB once, beside what this process holds. Run `python -m clipsearch export` "
            "on a larger machine and ship its CLIPSEARCH_ONNX_CACHE folder with the app (docs/public-app.md)."
        )
    last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
    try:
        reported = json.loads(last)
        error_class = getattr(errors, reported["error"])
        message = str(reported["message"])
    except (ValueError, KeyError, TypeError, AttributeError):
        raise OnnxUnusable(f"the export failed (exit {done.returncode}): {last}") from None
    if isinstance(error_class, type) and issubclass(error_class, ClipsearchError):
        raise error_class(message)
    raise OnnxUnusable(f"the export failed (exit {done.returncode}): {message}")


def session(path: Path, packed: bool = False, threads: int = 0) -> onnxruntime.InferenceSession:
    """An ONNX Runtime session of an exported tower.

    `packed`: MLAS copies each weight matrix into its own layout once (prepacking), and ONNX Runtime then
    lets go of the mapped weights file: the same resident memory, as memory of the process's own rather than
    page cache, and each run no longer packs every matrix again. The text tower (every search) and the
    loader's batches run packed. Unpacked, without the memory arena, a session reads the weights where they
    lie in the mapped file, page cache that the kernel can share and reclaim: the image tower of a page, used
    only for an upload, runs so (docs/public-app.md has the figures).

    `threads`: each run's operators use that many threads (0: ONNX Runtime's choice, one per core), and one
    run's graph runs in order: a page's concurrent queries are many runs at once, each on its caller's thread.
    Those threads sleep when a run ends instead of spinning while they wait for the next one: between two
    searches a spinning pool takes the cores that the browser, the Valkey server and the page's own work
    need (docs/public-app.md has the figures), and the loader's decoding threads need them too.
    """
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: the graph optimiser's notes are not for users
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if not packed:
        options.enable_cpu_mem_arena = False
        options.add_session_config_entry("session.disable_prepacking", "1")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def normalised(features: np.ndarray) -> np.ndarray:
    features = features.astype(np.float32, copy=False)
    norms = np.linalg.norm(features, axis=-1, keepdims=True)
    normed: np.ndarray = features / np.maximum(norms, 1e-12)  # torch.nn.functional.normalize's epsilon
    return normed


class OnnxTextEncoder:
    """The text tower through ONNX Runtime, with a torch-free tokenizer, queries cut after end-of-text.

    With `int8` (CLIPSEARCH_TEXT_PRECISION=int8) the tower with int8 weights runs: a query reads every weight
    of the tower once, so a quarter of the bytes is most of a quarter of the time, and a quarter of the tower's
    memory in a page that serves every visitor; its vectors are close to open_clip's, not equal.
    """

    def __init__(self, export: Export, threads: int = 0, int8: Export | None = None) -> None:
        manifest = export.manifest
        self.identity = ModelIdentity(manifest["model"], manifest["pretrained"], manifest["dim"])
        self.logit_scale = float(manifest["logit_scale"])
        self.tokenizer = ClipTokenizer(export.folder / VOCABULARY_FILE, manifest["context_length"])
        self.precision = "float32" if int8 is None else "int8"
        model_file = export.folder / MODEL_FILE if int8 is None else int8.folder / INT8_FILE
        self.session = session(model_file, packed=True, threads=threads)

    @classmethod
    def load(cls, model: ModelSpec) -> Self:
        """The float32 tower, or with CLIPSEARCH_TEXT_PRECISION=int8 the int8 one where it can be made and is
        close enough to open_clip's (else the float32 one, with a warning that says why)."""
        text = exported(model, "text")
        int8 = None
        if model.text_precision == "int8":
            try:
                int8 = exported(model, "text-int8")
            except (OnnxUnusable, ExportFailed) as reason:
                logger.warning(
                    "CLIPSEARCH_TEXT_PRECISION=int8: the int8 text tower of %s is not used (%s); running it in float32",
                    model.model_name,
                    reason,
                )
        return cls(text, model.onnx_threads, int8)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.identity.dim), dtype=np.float32)
        rows = self.tokenizer(texts)
        tokens = np.zeros((len(rows), max(map(len, rows))), dtype=np.int64)
        for i, ids in enumerate(rows):
            tokens[i, : len(ids)] = ids
        return normalised(self.session.run(None, {"tokens": tokens})[0])


class OnnxImageEncoder:
    """The image tower through ONNX Runtime. Photos are prepared as open_clip's transform prepares them: in
    numpy, where the export found that to give open_clip's exact pixels, else by open_clip itself."""

    def __init__(self, export: Export, batches: bool = False, threads: int = 0) -> None:
        manifest = export.manifest
        self.identity = ModelIdentity(manifest["model"], manifest["pretrained"], manifest["dim"])
        self.precision = "float32"
        self.preprocess = manifest["preprocess"]
        size = self.preprocess["size"]
        self.input_side = size if isinstance(size, int) else max(size)
        self.session = session(export.folder / MODEL_FILE, batches, 0 if batches else threads)
        self._open_clip_transform: Any = None
        if not manifest["preprocess_in_numpy"]:
            from open_clip.transform import PreprocessCfg, image_transform_v2  # torch: what numpy does not reproduce

            self._open_clip_transform = image_transform_v2(PreprocessCfg(**self.preprocess), is_train=False)

    @classmethod
    def load(cls, model: ModelSpec, batches: bool = False) -> Self:
        return cls(exported(model, "image"), batches, model.onnx_threads)

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        if self._open_clip_transform is not None:
            pixels: np.ndarray = self._open_clip_transform(image).numpy()
            return pixels
        return clip_pixels(image, self.preprocess)

    def encode_pixels(self, pixels: Sequence[np.ndarray]) -> np.ndarray:
        return normalised(self.session.run(None, {"pixels": np.stack(pixels)})[0])

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return self.encode_pixels([self.preprocess_image(image) for image in images])


def numpy_reproduces(preprocess: dict[str, Any]) -> bool:
    """Whether clip_pixels implements this open_clip preprocess configuration (the export then checks that
    its pixels are open_clip's, exactly)."""
    size = preprocess["size"]
    square = isinstance(size, int) or (len(size) == 2 and size[0] == size[1])
    return (
        square
        and preprocess.get("resize_mode", "shortest") == "shortest"
        and preprocess.get("interpolation", "bicubic") in ("bicubic", "bilinear")
    )


def clip_pixels(image: Image.Image, preprocess: dict[str, Any]) -> np.ndarray:
    """open_clip's eval transform for a square input and shortest-side resize, in PIL and numpy: the same PIL
    resize and crop torchvision calls on a PIL image, then the same float32 arithmetic as ToTensor and
    Normalize."""
    size = preprocess["size"] if isinstance(preprocess["size"], int) else preprocess["size"][0]
    width, height = image.size
    short, long = min(width, height), max(width, height)
    scaled = size, int(size * long / short)
    new_size = scaled if width <= height else scaled[::-1]
    resample = Image.Resampling.BILINEAR if preprocess.get("interpolation") == "bilinear" else Image.Resampling.BICUBIC
    if new_size != image.size:
        image = image.resize(new_size, resample)
    left = round((new_size[0] - size) / 2.0)
    top = round((new_size[1] - size) / 2.0)
    image = image.crop((left, top, left + size, top + size)).convert("RGB")
    pixels = np.asarray(image, dtype=np.uint8).astype(np.float32) / np.float32(255)
    mean = np.asarray(preprocess["mean"], dtype=np.float32)
    std = np.asarray(preprocess["std"], dtype=np.float32)
    chw: np.ndarray = ((pixels - mean) / std).transpose(2, 0, 1)
    return np.ascontiguousarray(chw)


def private_folder(path: Path) -> None:
    """The cache folder, readable by this user only: whoever can write an export decides what the model says."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
