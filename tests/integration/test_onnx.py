"""The ONNX Runtime engine: exports equal open_clip, a cache that is checked, and the engine setting.

The session's towers are exported once (into the run's own cache, see conftest.onnx_cache) by the first
test that needs them; the tests that break or kill an export use caches of their own.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import clipsearch.model.onnx_export
from clipsearch.ingest.decoding import decode_photo
from clipsearch.ingest.files import read_file
from clipsearch.model.engine import TextEncoding, has_nvidia_gpu, load_image_encoder, load_text_encoder, uses_onnx
from clipsearch.model.identity import pretrained_label
from clipsearch.model.onnx_engine import (
    INT8_AGREEMENT,
    MANIFEST,
    Export,
    OnnxImageEncoder,
    OnnxTextEncoder,
    export_folder,
)
from clipsearch.model.torch_engine import TorchImageEncoder, TorchTextEncoder
from clipsearch.settings import ModelSpec, Settings

# Mixed lengths in one batch: one over the 77-token context, an empty one, non-ASCII, one word.
TEXTS = [
    "a dog",
    "",
    "a red double-decker bus in the rain at night, London",
    "Straße in München, 東京の夜景, café 🐶",
    " ".join(["mountain"] * 100),
    "x",
]
TOLERANCE = 1e-5


@pytest.fixture
def onnx_model(settings: Settings, random_checkpoint: Path) -> ModelSpec:
    """The test model on the ONNX engine, with the suite's export cache, in float32: the precision in which
    the export equals open_clip."""
    return replace(settings.model, engine="onnx", pretrained=str(random_checkpoint), text_precision="float32")


def test_text_tower_equals_open_clip(onnx_model: ModelSpec, encoder: TorchImageEncoder) -> None:
    onnx = load_text_encoder(onnx_model)
    assert isinstance(onnx, OnnxTextEncoder) and onnx.identity == encoder.identity
    expected = encoder.encode_text(TEXTS)  # open_clip's model.encode_text, 77 tokens each
    assert np.abs(onnx.encode_text(TEXTS) - expected).max() < TOLERANCE
    one_by_one = np.stack([onnx.encode_text([text])[0] for text in TEXTS])  # each cut to its own length
    assert np.abs(one_by_one - expected).max() < TOLERANCE
    assert onnx.logit_scale == pytest.approx(encoder.logit_scale)
    assert onnx.encode_text([]).shape == (0, encoder.identity.dim)


def test_the_int8_text_tower_is_close_to_open_clip_and_ranks_as_it_does(
    onnx_model: ModelSpec, encoder: TorchImageEncoder, sample_photos: Path
) -> None:
    """CLIPSEARCH_TEXT_PRECISION=int8: a tower with int8 weights, whose vectors are not open_clip's but close
    to them (its export recorded how close), and the photos nearest a query nearly all the same."""
    assert Settings().text_precision == "float32"
    int8 = load_text_encoder(replace(onnx_model, text_precision="int8"))
    float32 = load_text_encoder(onnx_model)
    assert isinstance(int8, OnnxTextEncoder) and (int8.precision, float32.precision) == ("int8", "float32")
    assert int8.identity == float32.identity and int8.logit_scale == float32.logit_scale
    found = Export.find(export_folder(onnx_model, "text-int8"), onnx_model.model_name,
                        pretrained_label(onnx_model.pretrained), "text-int8")  # fmt: skip
    assert found is not None and found.manifest["usable"] and found.manifest["min_cosine"] >= INT8_AGREEMENT
    expected = encoder.encode_text(TEXTS)
    got = int8.encode_text(TEXTS)
    assert np.abs(got - expected).max() > 100 * TOLERANCE, "the int8 weights ran"
    assert (got * expected).sum(axis=1).min() >= INT8_AGREEMENT
    one_by_one = np.stack([int8.encode_text([text])[0] for text in TEXTS])
    assert (one_by_one * expected).sum(axis=1).min() >= INT8_AGREEMENT
    photos = encoder.encode_images([decode_photo(read_file(path)) for path in sorted(sample_photos.glob("*.jpg"))])
    queries = [f"a {thing}{place}" for thing in ("dog", "red car", "church", "bridge") for place in ("", " in snow")]
    kept = [len(set(np.argsort(-photos @ a)[:12]) & set(np.argsort(-photos @ b)[:12])) / 12
            for a, b in zip(int8.encode_text(queries), float32.encode_text(queries), strict=True)]  # fmt: skip
    # With random weights the sample photos are all about 0.99 alike, where a small change reorders them most
    # easily; even so nearly all of the twelve nearest stay (docs/benchmarks.md has the figures).
    assert np.mean(kept) >= 0.8, kept


def test_an_int8_tower_too_far_from_open_clip_is_not_used(onnx_model: ModelSpec, tmp_path: Path, monkeypatch, caplog):
    own, _ = _own_copy(onnx_model, tmp_path)
    # Asking for vectors equal to open_clip's: int8 weights never give them.
    monkeypatch.setattr(clipsearch.model.onnx_export, "INT8_AGREEMENT", 1.0)
    encoder = _refused(replace(own, text_precision="int8"), "text-int8", caplog)
    assert isinstance(encoder, OnnxTextEncoder) and encoder.precision == "float32"
    assert "int8 text tower" in caplog.text and "similar to open_clip's (under 1.0)" in caplog.text


def test_image_tower_and_its_preprocess_equal_open_clip(
    onnx_model: ModelSpec, encoder: TorchImageEncoder, sample_photos: Path
) -> None:
    onnx = load_image_encoder(onnx_model)
    assert isinstance(onnx, OnnxImageEncoder) and onnx.identity == encoder.identity
    photos = [decode_photo(read_file(path)) for path in sorted(sample_photos.glob("*.jpg"))[::20]]
    photos += [photos[0].convert("L"), photos[1].resize((90, 300)), photos[2].convert("RGBA")]
    for photo in photos:  # numpy's pixels are open_clip's, exactly
        assert np.array_equal(onnx.preprocess_image(photo), encoder.preprocess_image(photo))
    assert np.abs(onnx.encode_images(photos) - encoder.encode_images(photos)).max() < TOLERANCE


def test_engine_setting_is_honoured(onnx_model: ModelSpec) -> None:
    assert isinstance(load_text_encoder(replace(onnx_model, engine="torch")), TorchTextEncoder)
    assert isinstance(load_image_encoder(replace(onnx_model, engine="torch")), TorchImageEncoder)
    assert isinstance(load_text_encoder(onnx_model), OnnxTextEncoder)
    assert uses_onnx(replace(onnx_model, engine="auto")) is not has_nvidia_gpu()
    assert Settings.from_env({"CLIPSEARCH_ENGINE": "ONNX"}).engine == "onnx"


def _own_copy(onnx_model: ModelSpec, tmp_path: Path) -> tuple[ModelSpec, Path]:
    """The session's text export, copied into a cache of this test's own."""
    load_text_encoder(onnx_model)
    own = replace(onnx_model, onnx_cache=tmp_path / "cache")
    folder = export_folder(own, "text")
    shutil.copytree(export_folder(onnx_model, "text"), folder)
    return own, folder


def _find(model: ModelSpec, folder: Path) -> Export | None:
    return Export.find(folder, model.model_name, pretrained_label(model.pretrained), "text")


def test_a_changed_or_stale_export_is_not_used(onnx_model: ModelSpec, tmp_path: Path) -> None:
    own, folder = _own_copy(onnx_model, tmp_path)
    assert _find(own, folder) is not None
    data = folder / "model.onnx.data"
    original = data.read_bytes()
    with data.open("r+b") as handle:  # one flipped byte in the middle of the weights
        handle.seek(len(original) // 2)
        handle.write(bytes([original[len(original) // 2] ^ 1]))
    assert _find(own, folder) is None
    data.write_bytes(original[:-10])  # cut short
    assert _find(own, folder) is None
    data.write_bytes(original)
    assert _find(own, folder) is not None
    manifest = (folder / MANIFEST).read_text()
    (folder / MANIFEST).write_text(manifest.replace('"version": ', '"version": 1000 + '))  # not JSON any more
    assert _find(own, folder) is None
    (folder / MANIFEST).write_text(
        manifest.replace(f'"version": {clipsearch.model.onnx_export.EXPORT_VERSION}', '"version": 0')
    )
    assert _find(own, folder) is None  # an older clipsearch's export


def test_a_broken_export_is_exported_again(onnx_model: ModelSpec, encoder: TorchImageEncoder, tmp_path: Path) -> None:
    own, folder = _own_copy(onnx_model, tmp_path)
    data = folder / "model.onnx.data"
    with data.open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\xff" * 64)
    onnx = load_text_encoder(own)
    assert isinstance(onnx, OnnxTextEncoder)
    assert np.abs(onnx.encode_text(TEXTS) - encoder.encode_text(TEXTS)).max() < TOLERANCE
    assert _find(own, folder) is not None


def test_a_killed_export_leaves_nothing_that_is_used(onnx_model: ModelSpec, encoder: TorchImageEncoder, tmp_path: Path):
    own = replace(onnx_model, onnx_cache=tmp_path / "cache")
    folder = export_folder(own, "text")
    command = [
        sys.executable,
        "-m",
        "clipsearch.model.onnx_export",
        own.model_name,
        own.pretrained,
        "text",
        str(folder),
    ]
    export = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(folder.parent.glob(f".{folder.name}.*/model.onnx*")) and time.monotonic() < deadline:
        time.sleep(0.1)  # until it writes the model's files
    os.kill(export.pid, signal.SIGKILL)
    export.wait()
    assert list(folder.parent.glob(f".{folder.name}.*/model.onnx*")), "the export was killed while writing"
    assert not folder.exists()
    onnx = load_text_encoder(own)  # exports again, and clears the killed one's work
    assert isinstance(onnx, OnnxTextEncoder)
    assert np.abs(onnx.encode_text(TEXTS) - encoder.encode_text(TEXTS)).max() < TOLERANCE
    assert [path.name for path in folder.parent.iterdir() if path.is_dir()] == [folder.name]


def test_an_export_that_differs_from_open_clip_falls_back_to_torch_with_a_warning(
    onnx_model: ModelSpec, tmp_path: Path, monkeypatch, caplog
) -> None:
    # No tolerance at all: float arithmetic in another order always differs a little, so the check must refuse it.
    monkeypatch.setattr(clipsearch.model.onnx_export, "TOLERANCE", 0.0)
    encoder = _refused(replace(onnx_model, onnx_cache=tmp_path / "cache"), "text", caplog)
    assert isinstance(encoder, TorchTextEncoder)
    assert "ONNX Runtime is not used" in caplog.text and "differ from open_clip's" in caplog.text


def _refused(own: ModelSpec, tower: str, caplog: pytest.LogCaptureFixture) -> TextEncoding:
    """Exports `tower` here, not in a subprocess (the caller has made its check fail), then loads the text
    encoder, warnings captured; a second load must find the refusal recorded and export nothing."""
    folder = export_folder(own, tower)
    clipsearch.model.onnx_export.export(own.model_name, own.pretrained, tower, folder)
    recorded = (folder / MANIFEST).stat().st_mtime_ns
    with caplog.at_level(logging.WARNING):
        encoder = load_text_encoder(own)
    load_text_encoder(own)
    assert (folder / MANIFEST).stat().st_mtime_ns == recorded, "a refused export is remembered, not redone"
    return encoder


def test_weights_that_cannot_be_had_are_reported_as_such(onnx_model: ModelSpec) -> None:
    from clipsearch.errors import WeightsUnavailable

    with pytest.raises(WeightsUnavailable, match="CLIPSEARCH_PRETRAINED=/path/to"):
        load_text_encoder(replace(onnx_model, pretrained="commonpool_s_s13m_b4k"))


def test_exports_are_private_to_their_user(onnx_model: ModelSpec) -> None:
    load_text_encoder(onnx_model)
    assert oct(export_folder(onnx_model, "text").parent.stat().st_mode & 0o777) == "0o700"


# Loads the image tower with an empty cache and says what came of it: run in a small memory group, where the
# export's subprocess cannot fit.
LOAD_IN_A_SMALL_GROUP = """
import sys
from pathlib import Path
from clipsearch.model.engine import load_image_encoder
from clipsearch.errors import ExportFailed
from clipsearch.settings import Settings
try:
    load_image_encoder(Settings(engine="onnx", pretrained=sys.argv[1], onnx_cache=Path(sys.argv[2])).model)
    print("loaded")
except ExportFailed as error:
    print("ExportFailed:", error)
print("torch" in sys.modules)
"""


def test_an_export_killed_for_memory_is_reported_and_torch_never_loads(
    random_checkpoint: Path, tmp_path: Path, memory_cgroup
) -> None:
    """On main the page then loaded torch in its own process, where the kernel killed the whole server."""
    group = memory_cgroup(300 << 20)
    command = [*group.prefix, sys.executable, "-c", LOAD_IN_A_SMALL_GROUP, str(random_checkpoint), str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    outcome, torch_loaded = run.stdout.strip().splitlines()
    assert outcome.startswith("ExportFailed: exporting the image tower of ViT-B-32 was killed by signal 9 (SIGKILL)")
    assert "`python -m clipsearch export`" in outcome and "ship its CLIPSEARCH_ONNX_CACHE folder" in outcome
    assert torch_loaded == "False" and group.oom_kills >= 1


def test_the_export_command_prepares_the_towers_for_a_page_without_torch(
    cli_env: dict[str, str], run_cli, tmp_path: Path
) -> None:
    """With CLIPSEARCH_TEXT_PRECISION=int8 it makes the int8 text tower too: what a small container cannot."""
    env = {**cli_env, "CLIPSEARCH_ONNX_CACHE": str(tmp_path / "shipped"), "CLIPSEARCH_TEXT_PRECISION": "int8"}
    done = run_cli(env, "export")
    assert done.returncode == 0, done.stderr
    folders = {line.split(" tower: ")[0]: Path(line.split(": ", 1)[1]) for line in done.stdout.splitlines()
               if " tower: " in line}  # fmt: skip
    assert set(folders) == {"text", "image", "text-int8"}
    assert all((folder / MANIFEST).is_file() for folder in folders.values())
    script = (
        "import sys; from clipsearch.model.engine import load_image_encoder, load_text_encoder; "
        "from clipsearch.settings import Settings; settings = Settings.from_env(); "
        "text = load_text_encoder(settings.model); load_image_encoder(settings.model); "
        "print(text.precision, 'torch' in sys.modules)"
    )
    shipped = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert shipped.stdout.strip() == "int8 False", shipped.stderr[-2000:]
