"""The artifact store behind fsspec: content-addressed keys, atomic first-writer-wins puts, reads by hash, on the
workspace folder (today's layout), ``memory://`` and a real S3-compatible server on loopback (moto)."""

from __future__ import annotations

import hashlib
import threading
import uuid
from pathlib import Path

import pytest

from image_gen.store.artifacts import (
    ArtifactStore,
    check_artifacts_url,
    redact_artifacts_url,
    strip_credentials,
)
from image_gen.workspace import Workspace
from tests.store.conftest import s3fs_client


def _png(seed: int, size: int = 32) -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (size, size), (seed % 256, (seed * 7) % 256, (seed * 13) % 256)).save(buf, format="PNG")
    return buf.getvalue()


def test_workspace_default_is_the_folder_layout_of_before(tmp_path: Path) -> None:
    ws = Workspace.resolve(tmp_path)
    store = ws.artifacts()
    data = _png(1)
    sha, where = store.put_bytes(data)
    assert sha == hashlib.sha256(data).hexdigest()
    path = tmp_path / ".image-gen" / "artifacts" / sha[:2] / f"{sha}.png"
    assert path.read_bytes() == data and where == str(path.relative_to(tmp_path))
    assert store.is_local and store.local_path(sha) == path and store.exists(sha)
    assert store.read_bytes(sha) == data and store.open_image(sha).size == (32, 32)
    assert store.put_bytes(data) == (sha, where)  # the same bytes again: a no-op
    assert not list(path.parent.glob(".tmp-*"))
    with pytest.raises(ValueError):
        store.read_bytes("../../etc/passwd")  # only hashes name artifacts
    missing = "0" * 64
    assert not store.exists(missing)
    with pytest.raises(FileNotFoundError):
        store.read_bytes(missing)


def test_memory_store_reads_by_hash_and_falls_back_to_the_workspace_folder(tmp_path: Path) -> None:
    old = Workspace.resolve(tmp_path).artifacts()
    old_sha, _ = old.put_bytes(_png(2))  # recorded before the workspace moved its artifacts

    url = f"memory://ig-{uuid.uuid4().hex[:8]}"
    ws = Workspace.resolve(tmp_path, artifacts_url=url)
    store = ws.artifacts()
    assert not store.is_local and store.url == url
    data = _png(3)
    sha, where = store.put_bytes(data)
    assert where == f"{url}/{sha[:2]}/{sha}.png"
    assert store.read_bytes(sha) == data
    assert not (tmp_path / ".image-gen" / "artifacts" / sha[:2]).exists()  # written to memory only
    # the old artifact is still readable by hash; new ones never land in the folder
    assert store.exists(old_sha) and store.read_bytes(old_sha) == _png(2)
    copy = store.local_path(sha)
    assert copy.read_bytes() == data and copy.is_relative_to(tmp_path / ".image-gen" / "cache")


def test_s3_concurrent_puts_of_the_same_content_leave_one_object(bucket: str) -> None:
    url = f"s3://{bucket}/team/artifacts"
    data = _png(4, size=64)
    others = [_png(10 + i) for i in range(4)]
    barrier = threading.Barrier(12)
    results: list[tuple[str, str]] = []
    errors: list[BaseException] = []

    def put(payload: bytes) -> None:
        store = ArtifactStore(url)
        barrier.wait()
        try:
            results.append(store.put_bytes(payload))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(data,)) for _ in range(8)]
    threads += [threading.Thread(target=put, args=(o,)) for o in others]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    sha = hashlib.sha256(data).hexdigest()
    assert sum(1 for s, _ in results if s == sha) == 8
    fs = s3fs_client()
    keys = sorted(fs.find(bucket))
    expected = sorted(f"{bucket}/team/artifacts/{s[:2]}/{s}.png"
                      for s in {sha, *(hashlib.sha256(o).hexdigest() for o in others)})
    assert keys == expected  # one object per content, nothing temporary beside them
    for key in keys:
        assert hashlib.sha256(fs.cat_file(key)).hexdigest() == Path(key).stem
    store = ArtifactStore(url)
    assert store.read_bytes(sha) == data and store.exists(sha)
    assert dict(results)[sha] == f"{url}/{sha[:2]}/{sha}.png"


def test_s3_object_that_does_not_match_its_key_is_refused(bucket: str) -> None:
    store = ArtifactStore(f"s3://{bucket}/p")
    data = _png(5)
    sha, _ = store.put_bytes(data)
    s3fs_client().pipe_file(f"{bucket}/p/{sha[:2]}/{sha}.png", _png(6))  # overwritten behind the store's back
    with pytest.raises(OSError, match="does not match its hash"):
        store.read_bytes(sha)


def test_s3_credentials_in_the_url_are_used_and_never_shown(bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.store.conftest import ACCESS_KEY, SECRET_KEY

    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    url = f"s3://{ACCESS_KEY}:{SECRET_KEY}@{bucket}/p"
    store = ArtifactStore(url)
    sha, where = store.put_bytes(_png(7))
    assert SECRET_KEY not in store.url and SECRET_KEY not in where and f"{ACCESS_KEY}:***@" in where
    assert store.read_bytes(sha) == _png(7)


@pytest.mark.parametrize("url", ["file:///srv/artifacts", "s3://bucket/prefix", "s3://bucket", "memory://",
                                 "memory://team"])
def test_good_artifacts_urls(url: str) -> None:
    assert check_artifacts_url(f" {url} ") == url


@pytest.mark.parametrize(("url", "why"), [
    ("/srv/artifacts", "expected a URL"), ("file://relative/x", "three slashes"), ("s3://", "bucket"),
    ("nosuchproto://x", "not a known fsspec protocol"), ("", "expected a URL"),
])
def test_bad_artifacts_urls(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        check_artifacts_url(url)


def test_credentials_are_masked_or_stripped() -> None:
    url = "s3://AKIAXX:se%2Fcret@bucket/prefix"
    assert redact_artifacts_url(url) == "s3://AKIAXX:***@bucket/prefix"
    assert strip_credentials(url) == "s3://bucket/prefix"
    assert redact_artifacts_url("s3://bucket/a@b") == "s3://bucket/a@b"  # an '@' in a key is not a password


def _child_put(store: ArtifactStore, data: bytes) -> None:
    sha, _ = store.put_bytes(data)
    assert store.read_bytes(sha) == data


@pytest.mark.slow
def test_an_s3_store_crosses_to_another_process(bucket: str) -> None:
    """A worker process, forked after the store was used (s3fs's client is not fork-safe: the store makes a new one)
    or handed the store pickled, writes to the same bucket."""
    import multiprocessing
    import pickle

    store = ArtifactStore(f"s3://{bucket}/p")
    store.put_bytes(_png(8))  # the parent's client is live when the child is forked
    child = multiprocessing.get_context("fork").Process(target=_child_put, args=(store, _png(9)))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    clone = pickle.loads(pickle.dumps(store))
    sha9 = hashlib.sha256(_png(9)).hexdigest()
    assert clone.read_bytes(sha9) == _png(9) and clone.url == store.url
