"""``aigc data download``: fetch the public data sets this project uses, verified against known checksums.

Each data set is a :class:`DatasetSource` in :data:`REGISTRY`: its files, their public URLs (tried in order),
its licence, and the checksums that identify good copies. A file lands in ``OUT/FILE``. It comes either from the
network (``urllib``, with a timeout and a Rich progress bar) or from a mirror folder laid out the same way
(``--mirror DIR`` or ``AIGC_DATA_MIRROR``), for machines without internet access. Either way the bytes go to a
temporary file that must match a checksum before it replaces the target, so a failed or tampered transfer
never leaves a file behind.

What the checksums prove, honestly: ``sha256`` values were computed on the copies in the team's shared data
folder; for E2E, BANKING77, Fashion-MNIST and Tiny Shakespeare those copies are byte-identical to the public
files (their md5/sha256 agree with the values published by the authors or by independent users).
AdvertiseGen is different: the shared ``dev.json`` is a 535-line slice, so its sha256 only identifies that
slice (found in mirrors); the full public file is identified by the git blob id GitHub serves it under.
"""

from __future__ import annotations

import hashlib
import shutil
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from aigc_studio.errors import AigcError
from aigc_studio.fileio import atomic_write_with, require_file

MIRROR_ENV_VAR = "AIGC_DATA_MIRROR"
ChecksumKind = Literal["sha256", "md5", "git-blob-sha1"]
_CHUNK_BYTES = 1 << 20


@dataclass(frozen=True)
class Checksum:
    """A digest that identifies one good copy of a file.

    Attributes:
        kind: ``sha256``, ``md5`` (what some publishers list), or ``git-blob-sha1`` (the id git gives the
            file's content: sha1 of ``b"blob <size>\\0" + content``, as shown by ``git hash-object``).
        value: the hex digest.
        identifies: which copy this digest was taken from, in words.
    """

    kind: ChecksumKind
    value: str
    identifies: str


@dataclass(frozen=True)
class RemoteFile:
    """One file of a data set: its file name, where to get it, and how to recognise it."""

    name: str
    urls: tuple[str, ...]
    checksums: tuple[Checksum, ...]


@dataclass(frozen=True)
class DatasetSource:
    """A public data set the project knows how to fetch.

    Attributes:
        name: the registry key (``aigc data download NAME``).
        description: what it is and what it is used for here.
        licence: its licence, as the authors state it.
        homepage: where it is published.
        files: the files fetched.
        note: what is deliberately not fetched, or how to get it.
    """

    name: str
    description: str
    licence: str
    homepage: str
    files: tuple[RemoteFile, ...]
    note: str = ""


def _github_raw(repo: str, ref: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{ref}/{path}"


_SHARED = "the copy in the team's shared data folder"
_FASHION_MNIST_S3 = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com"
# The commit at which chibinjiang/ChatGLM2-6Bin holds AdvertiseGen/dev.json, pinned so the URL never drifts.
_ADVERTISEGEN_COMMIT = "329a6cd14435080f70b146fdf2e098b7d7ec46d8"

REGISTRY: dict[str, DatasetSource] = {
    source.name: source
    for source in (
        DatasetSource(
            name="e2e",
            description="E2E NLG Challenge: restaurant attributes (mr) -> description (ref); English data-to-text",
            licence="CC BY-SA 4.0",
            homepage="https://github.com/tuetschek/e2e-dataset",
            files=(
                RemoteFile(
                    "trainset.csv",
                    (_github_raw("tuetschek/e2e-dataset", "master", "trainset.csv"),),
                    (Checksum("sha256", "f27d48df45815288ab15619d47a79028c300fbb7f42e373668aba0b98c1d57c6", _SHARED),),
                ),
                RemoteFile(
                    "devset.csv",
                    (_github_raw("tuetschek/e2e-dataset", "master", "devset.csv"),),
                    (Checksum("sha256", "fc26b78cdb849c80545f513b223d1e051138b43882eeb79e3eb153e689c864f9", _SHARED),),
                ),
            ),
            note="the test set is not fetched: measure on devset.csv and keep the test set for final numbers",
        ),
        DatasetSource(
            name="tinyshakespeare",
            description="Tiny Shakespeare: 1.1 MB of plays; the character-level language-model sanity benchmark",
            licence="public domain text (collected by Andrej Karpathy for char-rnn, MIT)",
            homepage="https://github.com/karpathy/char-rnn",
            files=(
                RemoteFile(
                    "input.txt",
                    (_github_raw("karpathy/char-rnn", "master", "data/tinyshakespeare/input.txt"),),
                    (
                        Checksum("sha256", "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", _SHARED),
                        Checksum("git-blob-sha1", "7dcb3a2d4cc3b48b6283dd46870bfeb78f88aac9", "karpathy/char-rnn data/tinyshakespeare/input.txt"),
                    ),
                ),
            ),
        ),
        DatasetSource(
            name="banking77",
            description="BANKING77: 10,003 customer messages labelled with 77 intents; intent routing",
            licence="CC BY 4.0",
            homepage="https://github.com/PolyAI-LDN/task-specific-datasets",
            files=(
                RemoteFile(
                    "train.csv",
                    (_github_raw("PolyAI-LDN/task-specific-datasets", "master", "banking_data/train.csv"),),
                    (Checksum("sha256", "b06e26ac675513959a63135f11b94ea7786ed02da65db93a5650d8838cbc664b", _SHARED),),
                ),
                RemoteFile(
                    "categories.json",
                    (_github_raw("PolyAI-LDN/task-specific-datasets", "master", "banking_data/categories.json"),),
                    (Checksum("sha256", "53261da888122daf2d120d925458631d9619e15d82e56052e7a42e535ce32b63", _SHARED),),
                ),
            ),
            note="test.csv is not fetched: hold out part of train.csv, and keep the test set for final numbers",
        ),
        DatasetSource(
            name="fashion-mnist",
            description="Fashion-MNIST training set: 60,000 28x28 grey images of 10 product classes; design sketches",
            licence="MIT",
            homepage="https://github.com/zalandoresearch/fashion-mnist",
            files=tuple(
                RemoteFile(
                    name,
                    (f"{_FASHION_MNIST_S3}/{name}", _github_raw("zalandoresearch/fashion-mnist", "master", f"data/fashion/{name}")),
                    (
                        Checksum("sha256", sha256, _SHARED),
                        Checksum("md5", md5, "the md5 published in the Fashion-MNIST README"),
                    ),
                )
                for name, sha256, md5 in (
                    (
                        "train-images-idx3-ubyte.gz",
                        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    ),
                    (
                        "train-labels-idx1-ubyte.gz",
                        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                        "25c81989df183df01b3e8a0aad5dffbe",
                    ),
                )
            ),
            note="the t10k test files are not fetched: hold out part of the training images instead",
        ),
        DatasetSource(
            name="advertisegen",
            description="AdvertiseGen (Shao et al., EMNLP 2019): clothing attributes (content) -> Chinese ad copy (summary)",
            licence="none stated by the authors: research and evaluation use only, do not ship it in a product",
            homepage="https://github.com/THUDM/ChatGLM-6B/blob/main/ptuning/README.md",
            files=(
                RemoteFile(
                    "dev.json",
                    (_github_raw("chibinjiang/ChatGLM2-6Bin", _ADVERTISEGEN_COMMIT, "AdvertiseGen/dev.json"),),
                    (
                        Checksum("git-blob-sha1", "d035bb02c899cb81c23cdf7f9f329c4ae3ddc75a", "the full 1,070-line public dev.json"),
                        Checksum("sha256", "2f2d95e1625910a779feaeae11e9b1e07dccca55cb038f4db925b92cd5fec459",
                                 "the 535-line slice in the team's shared data folder (mirrors only)"),
                    ),
                ),
            ),
            note=(
                "train.json (114,599 lines) is published only inside the AdvertiseGen archive: download it from "
                "https://cloud.tsinghua.edu.cn/f/b3f119a008264b1cabd1/?dl=1 (or Google Drive id "
                "13_vf0xRTQsyneRKdD1bZIr93vBGOczrk) and unpack it yourself; no published checksum is known for it"
            ),
        ),
    )
}


@dataclass(frozen=True)
class FetchedFile:
    """What :func:`download_dataset` did for one file.

    Attributes:
        path: where the verified file now is.
        origin: the URL or mirror path it came from, or ``"already present"``.
        verified_by: the checksum it matched.
    """

    path: Path
    origin: str
    verified_by: Checksum


def file_digest(path: str | Path, kind: ChecksumKind) -> str:
    """The hex digest of a file, read in chunks.

    Raises:
        AigcError: unknown ``kind``.
    """
    path = Path(path)
    if kind == "git-blob-sha1":
        digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    elif kind in ("sha256", "md5"):
        digest = hashlib.new(kind)
    else:
        raise AigcError(f"unknown checksum kind {kind!r}; use sha256, md5 or git-blob-sha1")
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: str | Path, remote: RemoteFile, origin: str) -> Checksum:
    """Return the first of ``remote.checksums`` that ``path`` matches.

    Raises:
        AigcError: no checksum matches; the message gives the computed and expected digests.
    """
    digests: dict[str, str] = {}
    for checksum in remote.checksums:
        if checksum.kind not in digests:
            digests[checksum.kind] = file_digest(path, checksum.kind)
        if digests[checksum.kind] == checksum.value.lower():
            return checksum
    expected = remote.checksums[0]
    raise AigcError(
        f"checksum mismatch for {remote.name} from {origin}: {expected.kind} is {digests[expected.kind]}, expected "
        f"{expected.value} ({expected.identifies}); the copy is damaged or changed, so it was not kept"
    )


def _copy_from_mirror(remote: RemoteFile, source: Path, target: Path) -> Checksum:
    matched: list[Checksum] = []

    def copy_and_verify(tmp_path: Path) -> None:
        shutil.copyfile(source, tmp_path)
        matched.append(verify_file(tmp_path, remote, str(source)))

    atomic_write_with(target, copy_and_verify)
    return matched[0]


def _download(remote: RemoteFile, url: str, target: Path, timeout: float, console: Console) -> Checksum:
    matched: list[Checksum] = []

    def fetch_and_verify(tmp_path: Path) -> None:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp_path, "wb") as handle:
            total = int(response.headers.get("Content-Length") or 0) or None
            columns = (TextColumn(remote.name), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
            with Progress(*columns, console=console, transient=True) as progress:
                task = progress.add_task(remote.name, total=total)
                while chunk := response.read(_CHUNK_BYTES):
                    handle.write(chunk)
                    progress.advance(task, len(chunk))
        matched.append(verify_file(tmp_path, remote, url))

    atomic_write_with(target, fetch_and_verify)
    return matched[0]


def fetch_file(
    remote: RemoteFile, target: str | Path, *, mirror_file: str | Path | None = None, timeout: float = 30.0,
    console: Console | None = None,
) -> FetchedFile:
    """Put a verified copy of ``remote`` at ``target``: keep a good existing copy, else copy or download it.

    Args:
        remote: the file to fetch.
        target: where it goes.
        mirror_file: copy this file instead of downloading (it must match a checksum too).
        timeout: seconds to wait for a server before trying the next URL.
        console: where the progress bar is drawn (stderr by default).

    Returns:
        What was done, as a :class:`FetchedFile`.

    Raises:
        AigcError: the mirror file is missing, no URL could be reached (the message says to use ``--mirror``),
            a server answered with an error, or the bytes match no checksum.
    """
    target = Path(target)
    if target.is_file():
        try:
            return FetchedFile(target, "already present", verify_file(target, remote, str(target)))
        except AigcError:
            pass  # a stale or damaged copy is simply replaced below
    if mirror_file is not None:
        source = require_file(mirror_file, f"mirror copy of {remote.name}")
        return FetchedFile(target, str(source), _copy_from_mirror(remote, source, target))
    console = console or Console(stderr=True)
    failures = []
    for url in remote.urls:
        try:
            return FetchedFile(target, url, _download(remote, url, target, timeout, console))
        except urllib.error.HTTPError as error:
            failures.append(f"{url} answered HTTP {error.code}")
        except (urllib.error.URLError, socket.timeout, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            failures.append(f"could not reach {url} ({reason})")
    raise AigcError(f"{'; '.join(failures)}; check the network, or pass --mirror DIR (or set {MIRROR_ENV_VAR}) "
                    f"with a copy at DIR/<dataset>/{remote.name}")


def download_dataset(
    name: str, out_dir: str | Path, *, mirror: str | Path | None = None, timeout: float = 30.0, console: Console | None = None
) -> list[FetchedFile]:
    """Fetch every file of data set ``name`` into ``out_dir``, verifying each against its checksums.

    Args:
        name: a key of :data:`REGISTRY` (``e2e``, ``tinyshakespeare``, ``banking77``, ``fashion-mnist``,
            ``advertisegen``).
        out_dir: the folder the files land in (``out_dir/FILE``).
        mirror: a folder laid out as ``mirror/name/FILE`` (like the team's shared data folder) to copy from
            instead of the network.
        timeout: seconds to wait for a server.
        console: where progress is drawn.

    Returns:
        One :class:`FetchedFile` per file, in registry order.

    Raises:
        AigcError: unknown ``name`` (the message lists the known ones), a missing mirror file, no network, or a
            checksum mismatch.
    """
    if name not in REGISTRY:
        raise AigcError(f"unknown data set {name!r}; choose one of: {', '.join(REGISTRY)}", param="name")
    if mirror is not None and not Path(mirror).is_dir():
        raise AigcError(f"mirror folder not found: {mirror}; pass a folder laid out as MIRROR/{name}/FILE", param="mirror")
    return [
        fetch_file(
            remote,
            Path(out_dir) / remote.name,
            mirror_file=None if mirror is None else Path(mirror) / name / remote.name,
            timeout=timeout,
            console=console,
        )
        for remote in REGISTRY[name].files
    ]

