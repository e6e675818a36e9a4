"""clipsearch on a real local Valkey cluster: 3 primaries, each with valkey-search and its coordinator.

The store's operations run on the shared cluster in test_store, test_results, test_library and test_query
(their BACKENDS); here, the CLI's life cycle as a user runs it against a cluster, and the page on a cluster
that loses a primary and gets it back.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import valkey
from cluster import BUS_OFFSET, COORDINATOR_OFFSET, LocalCluster
from streamlit.testing.v1 import AppTest

from clipsearch.index.connection import connect
from clipsearch.index.store import PhotoStore
from clipsearch.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("cluster",)


def documents(store: PhotoStore) -> dict[str, object]:
    """Every photo document of the index, read on every shard: key to (path, vector bytes)."""
    return {key: (photo.path, photo.vector.tobytes()) for key, photo in store.scan(("path", "vector"))}


def shard_counts(cluster: LocalCluster, prefix: str) -> list[int]:
    """The index's photo documents on each primary, counted there."""
    counts = []
    for node in cluster.nodes:
        with node.client() as client:
            counts.append(sum(1 for _ in client.scan_iter(match=f"{prefix}*", count=1000)))
    return counts


def test_the_cli_life_cycle_on_a_cluster(
    search_server,
    tmp_path: Path,
    cli_env: dict[str, str],
    copy_photos,
    sample_photos: Path,
    run_cli,
    search_equals_brute_force,
) -> None:
    """index (three parts at once), search, info, a second run, prune, --rebuild and drop, against a cluster named
    by one node's URL: every result equals brute force over the documents of all shards."""
    cluster = search_server.cluster
    names = sorted(p.name for p in sample_photos.glob("*.jpg"))[:30]
    folder = copy_photos(tmp_path / "photos", names)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "clipsearch", "index", str(folder), "--strict", "--part", f"{i}/3"],
            env=cli_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for i in (1, 2, 3)
    ]  # fmt: skip
    outputs = [run.communicate(timeout=600) for run in runs]
    assert all(run.returncode == 0 for run in runs), [err for _, err in outputs]
    settings = Settings.from_env(cli_env)
    store = PhotoStore.existing(connect(settings), settings.index_name)
    counts = shard_counts(cluster, store.schema.prefix)
    assert sum(counts) == len(names) and all(counts), counts  # spread over the three shards
    assert f"{len(names)} photos" in run_cli(cli_env, "info").stdout  # the count of all shards

    search_equals_brute_force(cli_env, {key: row for key, row in store.scan(("path", "vector"))})

    again = run_cli(cli_env, "index", str(folder))
    assert f"Nothing to encode: all {len(names)} photos are unchanged." in again.stdout
    for name in names[:4]:
        (folder / name).unlink()
    pruned = run_cli(cli_env, "index", str(folder), "--prune")
    assert "pruned 4" in pruned.stdout, pruned.stdout + pruned.stderr
    assert sorted(path for path, _ in documents(store).values()) == names[4:]

    before = documents(store)
    rebuilt = run_cli(cli_env, "index", str(folder), "--rebuild")
    assert rebuilt.returncode == 0 and f"indexed {len(names) - 4}," in rebuilt.stdout, rebuilt.stderr
    assert documents(store) == before  # the same photos, encoded again to the same vectors
    assert "dropped" in run_cli(cli_env, "drop", "--yes").stdout
    assert shard_counts(cluster, store.schema.prefix) == [0, 0, 0]
    assert "none yet" in run_cli(cli_env, "info").stdout


@pytest.fixture
def own_cluster(tmp_path: Path, valkey_search: Path) -> Iterator[LocalCluster]:
    """A cluster of this test's own: it loses a primary."""
    cluster = LocalCluster(tmp_path / "cluster", valkey_search).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def test_the_page_on_a_cluster_that_loses_a_primary_says_so_then_recovers(
    own_cluster: LocalCluster, monkeypatch, random_checkpoint: Path, encoder, photo_folder: Path
) -> None:
    from clipsearch.ingest.loader import LoadOptions
    from clipsearch.library import Library

    settings = Settings(valkey_url=own_cluster.url, index_name="restart", pretrained=str(random_checkpoint))
    for name, value in {
        "VALKEY_URL": own_cluster.url, "CLIPSEARCH_INDEX": settings.index_name,
        "CLIPSEARCH_PRETRAINED": str(random_checkpoint), "CLIPSEARCH_PHOTOS": str(photo_folder),
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    library = Library(settings, text_encoder=lambda: encoder, image_encoder=lambda: encoder)
    library.index_folder(photo_folder, LoadOptions(), show_bar=False)
    stored = documents(library.store())

    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=120)
    app.query_params["q"] = "a tower"
    app.run()
    assert not app.exception and not app.error
    shown = [markdown.value for markdown in app.markdown if "Photos matching" in markdown.value]
    assert shown and "12 results" in shown[0], shown

    lost = own_cluster.nodes[1]
    own_cluster.stop_node(lost)
    time.sleep(3)  # past cluster-node-timeout: the others mark it failed
    app.run()
    assert not app.exception, app.exception
    assert app.error, "a lost primary must be said, not shown as no results"

    own_cluster.restart_node(lost)
    for _ in range(20):  # a reload or two, as a visitor would
        app.run()
        if not app.error:
            break
        time.sleep(0.5)
    assert not app.error and not app.exception, [error.value for error in app.error]
    shown = [markdown.value for markdown in app.markdown if "Photos matching" in markdown.value]
    assert shown and "12 results" in shown[0], shown
    assert documents(Library(settings, text_encoder=lambda: encoder).store()) == stored  # nothing lost


def test_a_local_cluster_is_private_to_this_machine_and_user(own_cluster: LocalCluster, as_other_user) -> None:
    """valkey-search's coordinator binds every interface by itself, and answers any peer without a password."""
    for node in own_cluster.nodes:
        listening = node.listening_addresses()
        assert {port for _, port in listening} == {node.port, node.port + BUS_OFFSET, node.port + COORDINATOR_OFFSET}
        assert {address for address, _ in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening
        with pytest.raises(valkey.AuthenticationError), valkey.Valkey(port=node.port) as stranger:
            stranger.ping()
    with connect(Settings(valkey_url=own_cluster.url)) as client:  # the cluster's URL carries its password
        client.set("probe", "1")
    files = [own_cluster.folder, *own_cluster.folder.rglob("*")]
    assert len(files) > 10 and not [path for path in files if path.stat().st_mode & 0o077 and path.suffix != ".so"]
    other = subprocess.run(
        [*as_other_user, "cat", str(own_cluster.nodes[0].folder / "valkey.conf")], capture_output=True
    )
    assert other.returncode != 0, "another user reads the password"
