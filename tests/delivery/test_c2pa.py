"""C2PA: a rendition signed with a throwaway certificate chain is read back by c2pa.Reader, listing every model."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from image_gen.delivery.encode import MIME, Metadata, encode
from image_gen.delivery.provenance import (
    C2PA_ASSERTION,
    TRAINED_ALGORITHMIC_MEDIA,
    C2paSigner,
    ModelStep,
    Provenance,
    active_manifest,
    c2pa_manifest,
    digital_source_type,
    models_in_manifest,
    read_c2pa,
    read_xmp,
    xmp_packet,
)
from tests.delivery.certs import make_chain

c2pa = pytest.importorskip("c2pa")

MODELS = [ModelStep("draft", "ideogram-v1-turbo", "generate"), ModelStep("layout", "ideogram-v2a", "img2img"),
          ModelStep("final", "sd3.5-medium", "img2img"), ModelStep("final", "sd3.5-medium", "tile")]


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_chain(tmp_path_factory.mktemp("certs"))


@pytest.mark.parametrize("fmt", ["jpeg", "webp", "png"])
def test_signed_rendition_reads_back_with_each_model(chain, fmt: str) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    img = Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    prov = Provenance("run9", "square", 'a can "FIZZ LIME"', MODELS, simulated=False, edits=["cropped to 96x96",
                                                                                              "resized to 128x96"])
    data = encode(img, fmt, 80, Metadata(xmp=xmp_packet(prov)))
    signed = C2paSigner(str(chain.cert), str(chain.key)).sign(data, MIME[fmt], c2pa_manifest(prov, f"x.{fmt}",
                                                                                               MIME[fmt]))
    assert len(signed) > len(data)
    store = read_c2pa(signed, MIME[fmt])
    assert store["validation_state"] == "Valid"  # signature and hashes check; the test root is not trusted
    manifest = active_manifest(store)
    assert manifest["signature_info"]["common_name"] == "image-gen test signer"
    assert models_in_manifest(manifest) == [m.model for m in MODELS]
    ours = next(a for a in manifest["assertions"] if a["label"] == C2PA_ASSERTION)
    assert [m["model"] for m in ours["data"]["models"]] == [m.model for m in MODELS]
    actions = next(a for a in manifest["assertions"] if a["label"] == "c2pa.actions.v2")["data"]["actions"]
    assert actions[0]["action"] == "c2pa.created" and actions[0]["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA
    assert {"c2pa.cropped", "c2pa.resized"} <= {a["action"] for a in actions}
    # the XMP written before signing survives the embedding
    reopened = Image.open(io.BytesIO(signed))
    reopened.load()
    assert digital_source_type(read_xmp(reopened.info)) == TRAINED_ALGORITHMIC_MEDIA
    # with the throwaway root as a trust anchor the same file is Trusted
    assert read_c2pa(signed, MIME[fmt], trust_anchors=chain.root_pem)["validation_state"] == "Trusted"


def test_certificate_without_authority_key_identifier_is_refused(chain) -> None:  # type: ignore[no-untyped-def]
    data = encode(Image.new("RGB", (32, 32), (9, 9, 9)), "jpeg", 80, Metadata())
    prov = Provenance("r", "c", "p", MODELS[:1], simulated=False)
    with pytest.raises(c2pa.C2paError, match="certificate"):
        C2paSigner(str(chain.no_aki_cert), str(chain.key)).sign(data, "image/jpeg",
                                                                     c2pa_manifest(prov, "x.jpg", "image/jpeg"))


def test_unreadable_key_is_bad_input(tmp_path: Path, chain) -> None:  # type: ignore[no-untyped-def]
    from image_gen.errors import InputError

    with pytest.raises(InputError, match="provenance.c2pa_key"):
        C2paSigner(str(chain.cert), str(tmp_path / "missing.pem")).sign(b"", "image/jpeg", {})
