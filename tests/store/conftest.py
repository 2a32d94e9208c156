"""An S3-compatible server on loopback for the artifact-store tests: moto's server mode (real HTTP, real S3 wire
protocol, no mock object), started once per session on a free port; each test gets its own bucket.

s3fs finds the server through the standard AWS variables (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...), as
a deployment would; the user's own AWS files are never read."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ACCESS_KEY = "image-gen-test-key"
SECRET_KEY = "image-gen-test-secret"


@dataclass
class S3Server:
    endpoint: str

    def env(self, tmp: Path) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(tmp / "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp / "no-aws-creds"),
        }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    pytest.importorskip("s3fs")
    server_mod = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no request log lines in the test output
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> S3Server:
    for key, value in s3_server.env(tmp_path).items():
        monkeypatch.setenv(key, value)
    return s3_server


@functools.lru_cache(maxsize=4)
def s3fs_client(**options: Any) -> Any:
    """An s3fs client of the tests' own (never the store's instance; no cached listings, so every listing and read
    goes to the server), made once: making one loads botocore's S3 model, which takes a second or more."""
    import s3fs

    return s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False, **options)


@pytest.fixture
def bucket(s3_env: S3Server) -> str:
    """A new, empty bucket on the session's server."""
    name = f"ig-{uuid.uuid4().hex[:12]}"
    s3fs_client().mkdir(name)
    return name
