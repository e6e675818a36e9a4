"""The CLIP encoders: open_clip's own model, preprocess and tokenizer, with a real (random-weights) checkpoint."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch

from clipsearch.errors import ConfigError
from clipsearch.ingest.decoding import decode_photo
from clipsearch.model.identity import pretrained_label
from clipsearch.model.labels import rank_labels
from clipsearch.model.torch_engine import TorchImageEncoder, TorchTextEncoder
from clipsearch.settings import ModelSpec


def test_encodings_equal_open_clips_own(
    encoder: TorchImageEncoder, random_checkpoint: Path, sample_photos: Path
) -> None:
    reference, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=str(random_checkpoint))
    reference.eval()
    images = [decode_photo((sample_photos / name).read_bytes()) for name in ("chair.jpg", "giraffe.jpg")]
    texts = ["a photo of a cat on a chair", "", "写真"]
    with torch.no_grad():
        expected_images = torch.nn.functional.normalize(
            reference.encode_image(torch.stack(list(map(preprocess, images)))), dim=-1
        )
        tokens = open_clip.get_tokenizer("ViT-B-32")(texts)
        expected_texts = torch.nn.functional.normalize(reference.encode_text(tokens), dim=-1)
    vectors = encoder.encode_images(images)
    assert vectors.dtype == np.float32 and vectors.shape == (2, 512)
    np.testing.assert_allclose(vectors, expected_images.numpy(), atol=1e-5)
    np.testing.assert_allclose(encoder.encode_text(texts), expected_texts.numpy(), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_identity_is_computed_once_at_load(encoder: TorchImageEncoder, random_checkpoint: Path, monkeypatch) -> None:
    import clipsearch.model.identity as identity_module

    loaded = TorchTextEncoder.load(ModelSpec.named("ViT-B-32", str(random_checkpoint)))
    monkeypatch.setattr(identity_module, "file_fingerprint", lambda *args: pytest.fail("fingerprint read again"))
    assert loaded.identity == encoder.identity
    assert loaded.identity.pretrained.startswith("vit-b-32-random.pt#")


def test_text_tower_alone_encodes_like_the_full_model(encoder: TorchImageEncoder, random_checkpoint: Path) -> None:
    text_only = TorchTextEncoder.load(ModelSpec.named("ViT-B-32", str(random_checkpoint)))
    assert text_only.identity == encoder.identity
    tower_parameters = sum(p.numel() for p in text_only.tower.parameters())
    assert tower_parameters < 0.5 * sum(p.numel() for p in encoder.model.parameters())
    assert not any(name.startswith("visual") for name, _ in text_only.tower.named_parameters())
    texts = ["a photo of a cat", "snowy streets at night", ""]
    np.testing.assert_allclose(text_only.encode_text(texts), encoder.encode_text(texts), atol=1e-6)
    assert text_only.logit_scale == pytest.approx(encoder.logit_scale)


def test_rank_labels_orders_by_similarity_with_clip_softmax(encoder: TorchImageEncoder, sample_photos: Path) -> None:
    labels = ["cat", "dog", "car", " ", "cat"]
    image = encoder.encode_images([decode_photo((sample_photos / "farm-animals-cat.jpg").read_bytes())])[0]
    ranked = rank_labels(encoder, image, labels)
    assert [score.label for score in ranked] == sorted(
        {"cat", "dog", "car"}, key=lambda label: -float(encoder.encode_text([f"a photo of {label}."])[0] @ image)
    )
    assert sum(score.probability for score in ranked) == pytest.approx(1.0)
    logits = np.array([score.similarity for score in ranked]) * encoder.logit_scale
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose([score.probability for score in ranked], expected, rtol=1e-5)


def test_a_checkpoint_file_is_known_by_name_and_content_not_by_folder(random_checkpoint: Path, tmp_path: Path) -> None:
    same = tmp_path / "elsewhere" / random_checkpoint.name
    same.parent.mkdir()
    shutil.copy(random_checkpoint, same)
    assert pretrained_label(str(same)) == pretrained_label(str(random_checkpoint))
    assert pretrained_label(str(same)).startswith("vit-b-32-random.pt#")
    other = tmp_path / "other" / random_checkpoint.name  # same name, other weights
    other.parent.mkdir()
    shutil.copy(random_checkpoint, other)
    with open(other, "r+b") as handle:  # same size, one byte of the weights changed
        handle.seek(600_000)
        byte = handle.read(1)
        handle.seek(600_000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    assert pretrained_label(str(other)) != pretrained_label(str(random_checkpoint))
    assert pretrained_label("laion2b_s34b_b79k") == "laion2b_s34b_b79k"


def test_unknown_model_or_tag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not an open_clip model"):
        TorchImageEncoder.load(ModelSpec.named("ViT-Z-99", "openai"))
    with pytest.raises(ConfigError, match="neither a pretrained tag of ViT-B-32.*nor an existing checkpoint file"):
        TorchImageEncoder.load(ModelSpec.named("ViT-B-32", "no-such-tag-or-file"))


# --- the loader ----------------------------------------------------------------------------


def test_the_text_path_cut_at_end_of_text_equals_open_clips_encode_text(
    encoder: TorchImageEncoder, random_checkpoint: Path
) -> None:
    """The page's text tower runs each batch only up to its last end-of-text token: the same vectors."""
    text_only = TorchTextEncoder.load(ModelSpec.named("ViT-B-32", str(random_checkpoint)))
    assert text_only.cut_at_end_of_text, "ViT-B-32's tower is causal and pools at end-of-text"
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    texts = [
        "",
        "a cat",
        "Schnee auf der Straße, café au lait, 写真, 🐈",
        "two children playing football on a beach at sunset while a dog runs after the ball",
        " ".join(["word"] * 120),  # fills all 77 tokens: nothing to cut
    ]
    assert int(tokenizer(texts[-1:])[0].argmax()) == 76
    with torch.no_grad():
        expected = torch.nn.functional.normalize(encoder.model.encode_text(tokenizer(texts)), dim=-1).numpy()
    np.testing.assert_allclose(text_only.encode_text(texts), expected, atol=1e-5)
    for text, row in zip(texts, expected, strict=True):  # alone, each batch is cut at its own length
        np.testing.assert_allclose(text_only.encode_text([text])[0], row, atol=1e-5)


def test_the_text_tower_maps_the_checkpoint_instead_of_copying_it(random_checkpoint: Path) -> None:
    """Its weights are the memory-mapped checkpoint's tensors: nothing of the vision tower is read into memory."""
    text_only = TorchTextEncoder.load(ModelSpec.named("ViT-B-32", str(random_checkpoint)))
    address = text_only.tower.token_embedding.weight.data_ptr()
    mapped_from = [
        line.split(maxsplit=5)[-1]
        for line in Path("/proc/self/maps").read_text().splitlines()
        if int(line.split("-")[0], 16) <= address < int(line.split()[0].split("-")[1], 16)
    ]
    assert mapped_from == [str(random_checkpoint)], "the weights live in the mapped checkpoint, not in a copy"
    assert text_only.tower.attn_mask is not None and not text_only.tower.attn_mask.is_meta
