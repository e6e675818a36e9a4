"""Query arithmetic: the grammar, its errors, and the vector it stands for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from clipsearch.query import BadQuery, Term, combine, parse_query


@pytest.mark.parametrize(
    ("query", "terms"),
    [
        ("a dog on a chair", [Term("a dog on a chair")]),
        ("2:golden retriever + pool - 0.5:people", [Term("golden retriever", 2), Term("pool"), Term("people", -0.5)]),
        ("t-shirt - red", [Term("t-shirt"), Term("red", -1)]),  # no spaces round '-': one word
        ("12:30 train + 3:00 pm", [Term("12:30 train"), Term("3:00 pm")]),  # a time, not a weight
        ("- people + dog", [Term("people", -1), Term("dog")]),
        ("  cat  +  .5:kitten ", [Term("cat"), Term("kitten", 0.5)]),
        ("https://example.com/x", [Term("https://example.com/x")]),
    ],
)
def test_the_grammar(query: str, terms: list[Term]) -> None:
    assert parse_query(query) == terms


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("+ + x", "an operator without a term on both sides"),
        ("x +", "an operator without a term on both sides"),
        ("a + - b", "an operator without a term on both sides"),
        ("2x:dog", "the weight '2x' is not a number"),
        ("- people", "only negative terms"),
        ("-1:dog", "only negative terms"),
        ("   ", "the query is empty"),
    ],
)
def test_malformed_queries_are_explained(query: str, message: str) -> None:
    with pytest.raises(BadQuery, match=message):
        parse_query(query)


def test_terms_that_cancel_out_are_refused() -> None:
    vector = np.array([0.6, 0.8], dtype=np.float32)
    with pytest.raises(BadQuery, match="cancel each other out"):
        combine([vector, vector], [1.0, -1.0])


def test_cli_query_vector_is_the_weighted_sum_and_hits_equal_brute_force(
    cli_env: dict[str, str], run_cli, encoder, open_test_index, sample_photos: Path
) -> None:
    loaded = run_cli(cli_env, script="scripts/load_photos.py")
    assert loaded.returncode == 0, loaded.stderr
    store = open_test_index()
    rows = dict(store.scan(("path", "vector")))
    keys = list(rows)
    matrix = np.stack([rows[key]["vector"] for key in keys])
    like = next(key for key in keys if rows[key]["path"] == "chair.jpg")
    photo = sample_photos / "giraffe.jpg"
    query = "2:golden retriever + pool - 0.5:people"
    found = run_cli(cli_env, "search", query, "--image", str(photo), "--like", like, "--k", "8", "--json", "--no-dedup")
    assert found.returncode == 0, found.stderr
    texts = encoder.encode_text(["golden retriever", "pool", "people"])  # each term encoded on its own
    image = encoder.encode_images([encoder_photo(photo)])[0]
    expected = 2 * texts[0] + texts[1] - 0.5 * texts[2] + image + rows[like]["vector"]
    expected /= np.linalg.norm(expected)
    scores = matrix @ expected
    best = np.argsort(-scores)[:8]
    hits = json.loads(found.stdout)
    assert [hit["key"] for hit in hits] == [keys[i] for i in best]
    np.testing.assert_allclose([hit["score"] for hit in hits], scores[best], atol=1e-5)

    without_people = run_cli(cli_env, "search", "- people", "--like", like, "--k", "3", "--json", "--no-dedup")
    assert without_people.returncode == 0, "with a photo, the words may be only negative"
    expected = rows[like]["vector"] - texts[2]
    scores = matrix @ (expected / np.linalg.norm(expected))
    assert [hit["key"] for hit in json.loads(without_people.stdout)] == [keys[i] for i in np.argsort(-scores)[:3]]
    only_negative = run_cli(cli_env, "search", "- people")
    assert only_negative.returncode == 2 and "only negative terms" in only_negative.stderr

    bad = run_cli(cli_env, "search", "2x:dog + cat")
    assert bad.returncode == 2 and "the weight '2x' is not a number" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli(cli_env, "search", "--like", "no-such-key")
    assert missing.returncode == 2 and "no photo of index" in missing.stderr


def encoder_photo(path: Path):
    from clipsearch.loader import DECODE_MARGIN
    from clipsearch.photos import decode_photo

    return decode_photo(path.read_bytes(), at_least=DECODE_MARGIN * 224)
