"""`python -m clipsearch` and scripts/load_photos.py as a user runs them: subprocesses, exit statuses, output."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from clipsearch.errors import IndexMissing
from clipsearch.index.connection import connect
from clipsearch.index.server import EmbeddedServer
from clipsearch.index.store import PhotoStore
from clipsearch.ingest.facts import DAY, day_start
from clipsearch.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("stop_signal", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_killed_run_then_rerun_gives_one_whole_document_per_photo(
    tmp_path: Path, cli_env: dict[str, str], stop_signal: int, open_test_index, copy_photos, sample_photos: Path
) -> None:
    names = sorted(p.name for p in sample_photos.glob("*.jpg"))[:60]
    folder = copy_photos(tmp_path / "photos", names)
    command = [sys.executable, "scripts/load_photos.py", str(folder), "--batch-size", "4"]
    # Ctrl-C as a terminal sends it, whatever the suite was started from: a shell's background job starts with
    # SIGINT ignored, and a Python started so never turns SIGINT into KeyboardInterrupt.
    run = subprocess.Popen(
        command, env=cli_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    store = open_test_index()
    deadline = time.monotonic() + 240
    while store.count() < 12 and time.monotonic() < deadline and run.poll() is None:
        time.sleep(0.05)
    run.send_signal(stop_signal)
    _, stderr = run.communicate(timeout=60)
    if stop_signal == signal.SIGINT:
        assert run.returncode == 130 and "interrupted" in stderr and "Traceback" not in stderr
    written = store.count()
    assert 12 <= written < len(names), f"the run should be killed halfway, not after {written} photos"

    rerun = subprocess.run([*command, "--strict"], env=cli_env, cwd=ROOT, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"indexed {len(names) - written}, unchanged {written}, failed 0" in rerun.stdout
    rows = [row for _, row in store.scan(("path", "vector", "thumbnail", "content_hash", "width"))]
    assert sorted(row.path for row in rows) == names
    assert all(row.vector.shape == (512,) and row.thumbnail and row.width for row in rows)
    assert store.count() == len(names)


def test_second_cli_run_encodes_nothing_and_says_so(
    tmp_path: Path, cli_env: dict[str, str], copy_photos, run_cli
) -> None:
    folder = copy_photos(tmp_path / "photos", ["chair.jpg", "pan.jpg"])
    first = run_cli(cli_env, str(folder), script="scripts/load_photos.py")
    assert first.returncode == 0 and "indexed 2, unchanged 0, failed 0" in first.stdout
    # -X importtime lists every module the run imports: the model's libraries must not be among them.
    command = [sys.executable, "-X", "importtime", "-m", "clipsearch", "index", str(folder)]
    second = subprocess.run(command, env=cli_env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert "Nothing to encode: all 2 photos are unchanged." in second.stdout
    assert "indexed 0, unchanged 2" in second.stdout
    imported = {
        line.rpartition("|")[2].strip() for line in second.stderr.splitlines() if line.startswith("import time:")
    }
    assert "clipsearch.ingest.loader" in imported and not imported & {"torch", "onnxruntime", "open_clip"}

    info = run_cli(cli_env, "info").stdout
    assert "2 photos, model ViT-B-32 / vit-b-32-random.pt#" in info and f"photos from {folder.resolve()}" in info
    assert "dropped" in run_cli(cli_env, "drop", "--yes").stdout
    assert "none yet" in run_cli(cli_env, "info").stdout


def test_cli_exit_status_for_failures_and_unreachable_store(
    tmp_path: Path, cli_env: dict[str, str], copy_photos, run_cli
) -> None:
    folder = copy_photos(tmp_path / "photos", ["pan.jpg"])
    (folder / "broken.png").write_bytes(b"nope")
    lenient = run_cli(cli_env, "index", str(folder))
    assert lenient.returncode == 0 and "failed: broken.png: not an image" in lenient.stdout
    strict = run_cli(cli_env, "index", str(folder), "--strict")
    assert strict.returncode == 1
    unreachable = run_cli({**cli_env, "VALKEY_URL": "redis://:pw@127.0.0.1:1"}, "index", str(folder))
    assert (
        unreachable.returncode == 2 and "cannot reach" in unreachable.stderr and "Traceback" not in unreachable.stderr
    )


def test_cli_prune_over_another_folders_index_is_refused_then_allowed(
    tmp_path: Path, cli_env: dict[str, str], copy_photos, run_cli
) -> None:
    first = copy_photos(tmp_path / "first", ["chair.jpg"])
    second = copy_photos(tmp_path / "second", ["pan.jpg"])
    assert run_cli(cli_env, "index", str(first)).returncode == 0
    refused = run_cli(cli_env, "index", str(second), "--prune")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"1 photos loaded from {first}, not from {second}" in refused.stderr
    assert "--allow-other-folder" in refused.stderr
    assert "1 photos, " in run_cli(cli_env, "info").stdout
    allowed = run_cli(cli_env, "index", str(second), "--prune", "--allow-other-folder")
    assert allowed.returncode == 0 and "indexed 1, unchanged 0, failed 0, pruned 1" in allowed.stdout
    assert f"photos from {second}" in run_cli(cli_env, "info").stdout


def test_info_and_drop_need_no_model(tmp_path: Path, cli_env: dict[str, str], copy_photos, run_cli) -> None:
    assert run_cli(cli_env, "index", str(copy_photos(tmp_path / "p", ["chair.jpg"]))).returncode == 0
    no_model = {**cli_env, "CLIPSEARCH_PRETRAINED": str(tmp_path / "no-such-checkpoint.pt")}
    info = run_cli(no_model, "info")
    assert info.returncode == 0 and "1 photos, model ViT-B-32 / vit-b-32-random.pt#" in info.stdout
    assert "dropped" in run_cli(no_model, "drop", "--yes").stdout
    assert "no index" in run_cli(no_model, "drop", "--yes").stdout


def test_drop_without_a_terminal_refuses_unless_told_yes(
    tmp_path: Path, cli_env: dict[str, str], copy_photos, run_cli
) -> None:
    assert run_cli(cli_env, "index", str(copy_photos(tmp_path / "p", ["chair.jpg"]))).returncode == 0
    command = [sys.executable, "-m", "clipsearch", "drop"]
    scripted = subprocess.run(
        command, env=cli_env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120
    )
    assert scripted.returncode == 2 and "Traceback" not in scripted.stderr and "--yes" in scripted.stderr
    assert "1 photos" in run_cli(cli_env, "info").stdout, "nothing was dropped"


def test_a_search_by_photo_alone_with_another_model_is_refused(
    tmp_path: Path, cli_env: dict[str, str], copy_photos, run_cli, sample_photos: Path
) -> None:
    """A checkpoint of the same width: its vectors would compare, silently wrong."""
    import open_clip
    import torch

    assert run_cli(cli_env, "index", str(copy_photos(tmp_path / "p", ["chair.jpg", "baseball.jpg"]))).returncode == 0
    torch.manual_seed(99)
    other = tmp_path / "other-vit-b-32.pt"
    torch.save(open_clip.create_model("ViT-B-32").state_dict(), other)
    other_model = {**cli_env, "CLIPSEARCH_PRETRAINED": str(other)}
    for query in (["--image", str(sample_photos / "chair.jpg")], ["a chair"], ["--like", "anything"]):
        refused = run_cli(other_model, "search", *query)
        assert refused.returncode == 2 and "holds vectors from ViT-B-32 / vit-b-32-random.pt#" in refused.stderr, query
        assert "CLIPSEARCH_PRETRAINED=vit-b-32-random.pt" in refused.stderr and "Traceback" not in refused.stderr
    zero = run_cli(cli_env, "search", "a chair", "--duplicate-similarity", "0")
    assert zero.returncode == 2 and "above 0 and at most 1, not 0.0" in zero.stderr, "0 is not the default"
    assert run_cli(cli_env, "duplicates", "--duplicate-similarity", "0").returncode == 2


def test_weights_unavailable_offline_names_model_tag_and_how_to_give_a_file(
    tmp_path: Path, cli_env: dict[str, str], run_cli
) -> None:
    env = {k: v for k, v in cli_env.items() if k != "CLIPSEARCH_PRETRAINED"}  # the default tag
    offline = run_cli({**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "empty-hf-cache")}, "search", "a cat")
    assert offline.returncode == 2 and "Traceback" not in offline.stderr
    assert "CLIP model ViT-B-32 with pretrained tag 'laion2b_s34b_b79k'" in offline.stderr
    assert "huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in offline.stderr
    assert "CLIPSEARCH_PRETRAINED=/path/to/that/file" in offline.stderr


@pytest.fixture
def sample_index(cli_env: dict[str, str], run_cli) -> dict[str, str]:
    """All sample photos indexed through the loader script."""
    loaded = run_cli(cli_env, script="scripts/load_photos.py")
    assert loaded.returncode == 0, loaded.stderr
    return cli_env


def test_search_json_equals_brute_force_and_own_vectors_come_first(
    sample_index: dict[str, str], open_test_index, run_cli, sample_photos: Path, search_equals_brute_force
) -> None:
    store = open_test_index()
    rows = {key: row for key, row in store.scan(("path", "vector", "content_hash"))}
    assert len(rows) == len(list(sample_photos.glob("*.jpg")))
    search_equals_brute_force(sample_index, rows)
    named = json.loads(run_cli(sample_index, "search", "a photo of a cat", "--json", "--no-fold").stdout)
    assert named[0]["path"] == "farm-animals-cat.jpg" and named[0]["matched"] == ["name: cat"]  # its name's word

    for key in rows:
        first = store.nearest(rows[key].vector, k=1)[0]
        assert rows[first.key].content_hash == rows[key].content_hash
        assert first.score == pytest.approx(1.0, abs=1e-5)

    by_image = json.loads(
        run_cli(sample_index, "search", "--image", str(sample_photos / "giraffe.jpg"), "--json").stdout
    )
    assert by_image[0]["path"] == "giraffe.jpg"


@pytest.mark.skipif(
    not os.environ.get("CLIPSEARCH_TEST_CHECKPOINT"),
    reason="set CLIPSEARCH_TEST_CHECKPOINT to a real ViT-B-32 open_clip checkpoint (or tag, with network)",
)
def test_real_weights_find_the_cat(cli_env: dict[str, str], run_cli, sample_photos: Path) -> None:
    env = {**cli_env, "CLIPSEARCH_PRETRAINED": os.environ["CLIPSEARCH_TEST_CHECKPOINT"]}
    env.pop("HF_HUB_OFFLINE")  # a tag may be downloaded here
    env["CLIPSEARCH_INDEX"] += "-real"
    assert run_cli(env, "index", str(sample_photos)).returncode == 0
    found = json.loads(run_cli(env, "search", "a photo of a cat", "--json", "--k", "3").stdout)
    assert found[0]["path"] == "farm-animals-cat.jpg"


def test_prune_keeps_the_photos_of_a_folder_it_could_not_list(
    tmp_path: Path, cli_env: dict[str, str], copy_photos, run_cli
) -> None:
    """A real permission error: root lists any folder, so the loader runs without that power (root without
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH obeys file modes like any user)."""
    photos = copy_photos(tmp_path / "photos", ["chair.jpg"])
    copy_photos(photos / "sub", ["pan.jpg", "igloo.jpg"])
    assert run_cli(cli_env, "index", str(photos)).returncode == 0
    (photos / "sub").chmod(0)
    try:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable, "-m", "clipsearch"]
        pruned = subprocess.run(
            [*command, "index", str(photos), "--prune"], env=cli_env, cwd=ROOT, capture_output=True, text=True
        )
    finally:
        (photos / "sub").chmod(0o755)
    assert pruned.returncode == 0, pruned.stderr
    assert "failed: sub: cannot list folder: Permission denied" in pruned.stdout
    assert "pruned 0" in pruned.stdout and "3 photos" in run_cli(cli_env, "info").stdout


def test_a_server_killed_during_a_load_is_an_error_and_a_rerun_finishes(
    tmp_path: Path, cli_env: dict[str, str], copy_photos, sample_photos: Path, run_cli, settings: Settings
) -> None:
    server = EmbeddedServer(tmp_path / "own-data", search_module=settings.search_module)
    env = {**cli_env, "CLIPSEARCH_DATA_DIR": str(server.data_dir)}
    settings = Settings(data_dir=server.data_dir, search_module=server.search_module, index_name=settings.index_name)
    names = sorted(p.name for p in sample_photos.glob("*.jpg"))[:60]
    folder = copy_photos(tmp_path / "photos", names)
    command = [sys.executable, "-m", "clipsearch", "index", str(folder), "--batch-size", "4"]
    try:
        run = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        store = _opened_once_loading(settings, run)
        deadline = time.monotonic() + 240
        while store.count() < 12 and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.05)
        acknowledged = store.count()
        os.kill(server.pid() or 0, signal.SIGKILL)
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 2 and "Traceback" not in stderr, stderr
        assert "lost the connection to the Valkey server" in stderr and "run the same command again" in stderr

        restarted = PhotoStore.existing(connect(settings), settings.index_name)  # starts the server again
        assert restarted.count() >= acknowledged >= 12, "a photo acknowledged before the kill was lost"
        rerun = run_cli(env, "index", str(folder), "--strict")
        assert rerun.returncode == 0, rerun.stderr
        assert restarted.count() == len(names)
    finally:
        server.stop()


def _opened_once_loading(settings: Settings, run: subprocess.Popen[str]) -> PhotoStore:
    """The index, as soon as the loader has started the server and made it."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        if EmbeddedServer.of(settings).is_running():
            try:
                return PhotoStore.existing(connect(settings), settings.index_name)
            except IndexMissing:
                pass
        time.sleep(0.1)
    raise AssertionError("the loader never made the index")


def test_a_full_server_is_an_error_that_says_so(
    tmp_path: Path, cli_env: dict[str, str], copy_photos, run_cli, settings: Settings
) -> None:
    folder = copy_photos(tmp_path / "photos", ["chair.jpg", "pan.jpg"])
    server = EmbeddedServer(tmp_path / "full-data", search_module=settings.search_module)
    env = {**cli_env, "CLIPSEARCH_DATA_DIR": str(server.data_dir)}
    try:
        server.ensure_started()
        with server.client() as client:
            client.set("ballast", b"x" * 2_000_000)
            client.config_set("maxmemory-policy", "noeviction")
            client.config_set("maxmemory", "1mb")
        full = run_cli(env, "index", str(folder))
        assert full.returncode == 2 and "Traceback" not in full.stderr, full.stderr
        assert "refused a command" in full.stderr and "maxmemory" in full.stderr
    finally:
        server.stop()


def test_two_loaders_at_once_make_one_document_per_photo(
    tmp_path: Path, cli_env: dict[str, str], copy_photos, sample_photos: Path, open_test_index
) -> None:
    names = sorted(p.name for p in sample_photos.glob("*.jpg"))[:30]
    folder = copy_photos(tmp_path / "photos", names)
    command = [sys.executable, "-m", "clipsearch", "index", str(folder), "--batch-size", "8"]
    runs = [subprocess.Popen(command, env=cli_env, cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr
    store = open_test_index()
    rows = [row for _, row in store.scan(("path", "vector", "thumbnail"))]
    assert sorted(row.path for row in rows) == names and store.count() == len(names)
    assert all(row.vector.shape == (512,) and row.thumbnail for row in rows)


def test_bad_numbers_and_non_utf8_names_in_json(tmp_path: Path, cli_env: dict[str, str], copy_photos, run_cli) -> None:
    for option in ("--batch-size", "--thumbnail-size", "--max-pixels", "--max-bytes"):
        refused = run_cli(cli_env, "index", str(tmp_path), option, "0")
        assert refused.returncode == 2 and "is not above 0" in refused.stderr and "Traceback" not in refused.stderr
    folder = tmp_path / "photos"
    folder.mkdir()
    raw_name = b"caf\xe9.jpg"
    Path(os.fsdecode(os.fsencode(folder) + b"/" + raw_name)).write_bytes(
        (copy_photos(tmp_path / "c", ["chair.jpg"]) / "chair.jpg").read_bytes()
    )
    assert run_cli(cli_env, "index", str(folder)).returncode == 0
    found = subprocess.run(
        [sys.executable, "-m", "clipsearch", "search", "a chair", "--json"], env=cli_env, cwd=ROOT, capture_output=True
    )
    [hit] = json.loads(found.stdout.decode("utf-8"))  # strict UTF-8: no raw bytes in the output
    assert hit["path"] == "caf\ufffd.jpg" and hit["name"] == "caf\ufffd.jpg"
    assert base64.b64decode(hit["path_bytes"]) == raw_name


def test_search_filters_and_order_equal_brute_force_and_json_says_when_and_where(
    dated_library: Path, cli_env: dict[str, str], run_cli, settings: Settings
) -> None:
    assert run_cli(cli_env, "index", str(dated_library)).returncode == 0
    store = PhotoStore.existing(connect(settings), settings.index_name)
    rows = dict(store.scan(("path", "vector", "taken", "camera")))
    query = rows[next(iter(rows))].vector
    args = [
        "search",
        "--image",
        str(dated_library / rows[next(iter(rows))].path),
        "--json",
        "--k",
        "5",
        "--no-dedup",
    ]

    def run(*filters: str) -> list[dict]:
        result = run_cli(cli_env, *args, *filters)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    in_2021 = [key for key, row in rows.items() if row.path.startswith("2021/")]
    expected = sorted(in_2021, key=lambda key: -float(rows[key].vector @ query))[:5]
    assert [hit["key"] for hit in run("--folder", "2021")] == expected
    march = day_start("2021-03-01")
    spring = [key for key, row in rows.items() if row.taken is not None and march <= row.taken < march + 92 * DAY]
    got = run("--after", "2021-03-01", "--before", "2021-05-31", "--camera", "APPLE IPHONE 12", "--order", "newest")
    iphone_spring = [key for key in spring if rows[key].camera == "Apple iPhone 12"]
    best = sorted(iphone_spring, key=lambda key: -float(rows[key].vector @ query))[:5]
    assert [hit["key"] for hit in got] == sorted(best, key=lambda key: -rows[key].taken)
    assert got[0]["camera"] == "Apple iPhone 12" and got[0]["folder"] == "2021/japan"
    assert got[0]["taken"].startswith("2021-0") and got[0]["taken"].endswith("T12:00:00+09:00")
    undated = run("--folder", "2022")
    assert undated[0]["camera"] is None and undated[0]["taken_from"] == "file"
    bad = run_cli(cli_env, *args, "--after", "14/07/2021")
    assert bad.returncode == 2 and "write it as YYYY-MM-DD" in bad.stderr


def test_three_parts_at_once_fill_the_index_as_one_loader_does(
    tmp_path: Path, cli_env: dict[str, str], copy_photos, sample_photos: Path, run_cli, open_test_index
) -> None:
    """`index --part i/3` in three processes at once against one server: the parts never overlap, and their
    documents equal one loader's over the whole folder (same keys, vectors, facts and thumbnails)."""
    names = sorted(p.name for p in sample_photos.glob("*.jpg"))[:30]
    folder = copy_photos(tmp_path / "photos", names)
    command = [sys.executable, "-m", "clipsearch", "index", str(folder), "--batch-size", "4", "--strict"]
    runs = [
        subprocess.Popen(
            [*command, "--part", f"{i}/3"], env=cli_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2, 3)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=600) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err for _, err in outputs]
    indexed = [int(out.split("indexed ")[1].split(",")[0]) for out, _ in outputs]
    assert sum(indexed) == len(names) and all(indexed), indexed  # each part did some, and none twice
    fields = ("path", "vector", "thumbnail", "content_hash", "width", "height", "taken", "folders")
    parts = {key: photo for key, photo in open_test_index().scan(fields)}

    whole_env = {**cli_env, "CLIPSEARCH_INDEX": cli_env["CLIPSEARCH_INDEX"] + "-whole"}
    assert run_cli(whole_env, "index", str(folder), "--strict").returncode == 0
    whole_settings = Settings.from_env(whole_env)
    whole = PhotoStore.existing(connect(whole_settings), whole_settings.index_name)
    one_loader = {key.rpartition(":")[2]: photo for key, photo in whole.scan(fields)}
    assert sorted(photo.path for photo in parts.values()) == names
    assert {key.rpartition(":")[2]: photo for key, photo in parts.items()}.keys() == one_loader.keys()
    for key, photo in parts.items():
        other = one_loader[key.rpartition(":")[2]]
        assert np.array_equal(photo.vector, other.vector) and photo.thumbnail == other.thumbnail
        assert (photo.path, photo.content_hash, photo.width, photo.taken, photo.folders) == (
            other.path, other.content_hash, other.width, other.taken, other.folders
        )  # fmt: skip


def test_a_part_refuses_to_prune_or_rebuild_and_says_why(
    tmp_path: Path, cli_env: dict[str, str], copy_photos, run_cli
) -> None:
    folder = copy_photos(tmp_path / "photos", ["pan.jpg"])
    pruning = run_cli(cli_env, "index", str(folder), "--part", "1/2", "--prune")
    assert pruning.returncode == 2 and "each part sees only its own photos" in pruning.stderr, pruning.stderr
    rebuilding = run_cli(cli_env, "index", str(folder), "--part", "1/2", "--rebuild")
    assert rebuilding.returncode == 2 and "would drop the index the others write to" in rebuilding.stderr
    bad = run_cli(cli_env, "index", str(folder), "--part", "3/2")
    assert bad.returncode == 2 and "1 <= i <= n" in bad.stderr and "Traceback" not in bad.stderr
