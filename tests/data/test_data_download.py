"""Dataset download: the registry, mirror copies verified by checksum, tampered copies, offline failures."""

from __future__ import annotations

import functools
import hashlib
import subprocess
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from aigc_studio.data.download import REGISTRY, Checksum, RemoteFile, download_dataset, fetch_file, file_digest
from aigc_studio.errors import AigcError
from aigc_studio.fileio import sha256_file


def test_registry_covers_the_public_data_sets_with_urls_licences_and_checksums() -> None:
    assert set(REGISTRY) == {"e2e", "tinyshakespeare", "banking77", "fashion-mnist", "advertisegen"}
    for source in REGISTRY.values():
        assert source.licence and source.files
        for remote in source.files:
            assert remote.urls and all(url.startswith(("https://", "http://")) for url in remote.urls)
            assert remote.checksums


def test_mirror_copy_is_verified_and_lands_in_out(tmp_path: Path, shared_data: Path) -> None:
    fetched = download_dataset("banking77", tmp_path / "banking77", mirror=shared_data)
    assert [item.path for item in fetched] == [tmp_path / "banking77" / name for name in ("train.csv", "categories.json")]
    for item in fetched:
        assert sha256_file(item.path) == item.verified_by.value == sha256_file(shared_data / "banking77" / item.path.name)
        assert item.origin == str(shared_data / "banking77" / item.path.name)
    again = download_dataset("banking77", tmp_path / "banking77", mirror=shared_data)
    assert {item.origin for item in again} == {"already present"}


def test_advertisegen_slice_in_a_mirror_is_recognised_by_its_own_checksum(tmp_path: Path, shared_data: Path) -> None:
    (item,) = download_dataset("advertisegen", tmp_path, mirror=shared_data)
    assert item.verified_by.kind == "sha256" and "535-line slice" in item.verified_by.identifies


def test_tampered_mirror_copy_is_rejected_and_not_kept(tmp_path: Path, shared_data: Path) -> None:
    mirror = tmp_path / "mirror" / "tinyshakespeare"
    mirror.mkdir(parents=True)
    original = (shared_data / "tinyshakespeare" / "input.txt").read_bytes()
    (mirror / "input.txt").write_bytes(original.replace(b"First Citizen", b"First Citizan", 1))
    with pytest.raises(AigcError, match=r"checksum mismatch for input.txt from .*: sha256 is [0-9a-f]{64}, expected 86c4e6aa") as error:
        download_dataset("tinyshakespeare", tmp_path / "out", mirror=tmp_path / "mirror")
    assert "\n" not in str(error.value)
    assert list((tmp_path / "out").iterdir()) == []  # neither the file nor a temporary file is left


def test_damaged_existing_copy_is_replaced_from_the_mirror(tmp_path: Path, shared_data: Path) -> None:
    target = tmp_path / "out" / "input.txt"
    target.parent.mkdir()
    target.write_text("truncated", encoding="utf-8")
    (item,) = download_dataset("tinyshakespeare", tmp_path / "out", mirror=shared_data)
    assert item.origin != "already present" and sha256_file(target) == item.verified_by.value


@pytest.fixture
def local_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on localhost serving a temporary folder: exercises the urllib path without internet."""
    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # keep the test output clean
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", served
    server.shutdown()
    server.server_close()


def test_download_falls_back_to_the_next_url_and_verifies(tmp_path: Path, local_server: tuple[str, Path]) -> None:
    base_url, served = local_server
    payload = b"id,text\n1,hello\n"
    (served / "data.csv").write_bytes(payload)
    remote = RemoteFile(
        "data.csv",
        (f"{base_url}/missing.csv", f"{base_url}/data.csv"),
        (Checksum("md5", hashlib.md5(payload).hexdigest(), "the served file"),),
    )
    fetched = fetch_file(remote, tmp_path / "out" / "data.csv", timeout=5)
    assert fetched.origin == f"{base_url}/data.csv" and fetched.verified_by.kind == "md5"
    assert (tmp_path / "out" / "data.csv").read_bytes() == payload


def test_download_with_wrong_checksum_is_not_kept(tmp_path: Path, local_server: tuple[str, Path]) -> None:
    base_url, served = local_server
    (served / "data.csv").write_bytes(b"changed upstream\n")
    remote = RemoteFile("data.csv", (f"{base_url}/data.csv",), (Checksum("sha256", "ab" * 32, "the original"),))
    with pytest.raises(AigcError, match="checksum mismatch for data.csv"):
        fetch_file(remote, tmp_path / "data.csv", timeout=5)
    assert not (tmp_path / "data.csv").exists()


def test_http_error_is_reported_with_its_status(tmp_path: Path, local_server: tuple[str, Path]) -> None:
    base_url, _ = local_server
    remote = RemoteFile("gone.csv", (f"{base_url}/gone.csv",), (Checksum("sha256", "0" * 64, "nothing"),))
    with pytest.raises(AigcError, match=r"gone\.csv answered HTTP 404"):
        fetch_file(remote, tmp_path / "gone.csv", timeout=5)


def test_unreachable_url_says_to_use_a_mirror(tmp_path: Path) -> None:
    remote = RemoteFile("x.txt", ("http://127.0.0.1:9/x.txt",), (Checksum("sha256", "0" * 64, "nothing"),))
    with pytest.raises(AigcError, match=r"could not reach http://127\.0\.0\.1:9/x\.txt .*pass --mirror DIR") as error:
        fetch_file(remote, tmp_path / "x.txt", timeout=2)
    assert "\n" not in str(error.value) and not (tmp_path / "x.txt").exists()


def test_missing_mirror_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "mirror").mkdir()
    with pytest.raises(AigcError, match=r"mirror copy of trainset.csv not found: .*mirror/e2e/trainset.csv"):
        download_dataset("e2e", tmp_path / "out", mirror=tmp_path / "mirror")


def test_unknown_dataset_lists_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(AigcError, match=r"unknown data set 'imagenet'; choose one of: e2e, tinyshakespeare") as error:
        download_dataset("imagenet", tmp_path)
    assert error.value.param == "name"


def test_git_blob_sha1_matches_git_hash_object(tmp_path: Path) -> None:
    path = tmp_path / "blob.txt"
    path.write_bytes("héllo\nworld\n".encode())
    try:
        expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    assert file_digest(path, "git-blob-sha1") == expected
