"""The local diffusers provider on tiny, randomly initialised SD3-style and UNet pipelines loaded from disk."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from image_gen.providers import Provider, load_provider_class
from image_gen.providers.base import (
    BadRequest,
    ImageRequest,
    NotConfigured,
    ProviderSettings,
)
from image_gen.providers.diffusers_local import DiffusersLocalProvider
from tests.local._helpers import loaded, local_request, pixels, provider
from tests.local._oom import OomInjectingProvider, registered_as_local

torch = pytest.importorskip("torch")


def request(folder: Path, **kw: Any) -> ImageRequest:
    return local_request(folder, **{"prompt": 'a tin can "HELLO"', "seed": 7, **kw})


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# -- contract, loading, errors -------------------------------------------------------------------------------


def test_registered_under_local_and_meets_the_contract() -> None:
    assert load_provider_class("local") is DiffusersLocalProvider
    p = provider()
    assert isinstance(p, Provider)
    assert p.name == "local"
    assert p.is_configured()


def test_shipped_provider_has_no_test_hooks_and_tests_register_their_own() -> None:
    with pytest.raises(NotConfigured, match="oom_inject"):
        DiffusersLocalProvider(ProviderSettings(options={"oom_inject": ["base"]}))
    with registered_as_local():
        assert load_provider_class("local") is OomInjectingProvider
    assert load_provider_class("local") is DiffusersLocalProvider  # registration removed again


def test_missing_weights_folder_is_not_configured(tmp_path: Path) -> None:
    with pytest.raises(NotConfigured, match="no weights folder"):
        provider().generate(request(tmp_path / "nope"))
    with pytest.raises(NotConfigured, match="model_index.json"):
        provider().generate(request(tmp_path))


def test_missing_torch_or_diffusers_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tiny_sd3: Path) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "diffusers" else real(name, *a))
    p = provider()
    assert not p.is_configured()
    with pytest.raises(
        NotConfigured, match=r"diffusers.*pip install torch==2\.13\.0 && pip install 'image-gen\[local\]'"
    ):
        p.generate(request(tiny_sd3))


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"options": {"tile_sise": 64}}, "tile_sise"),
        ({"options": {"tile_size": 64, "overlap": 32}}, "less than half"),
        ({"operation": "upscale"}, "upscale"),
        ({"operation": "img2img"}, "init image"),
        ({"mask": b"x"}, "inpaint"),
    ],
)
def test_bad_requests_are_refused_before_any_work(tiny_sd3: Path, kw: dict[str, Any], match: str) -> None:
    with pytest.raises(BadRequest, match=match):
        provider().generate(request(tiny_sd3, **kw))


def test_bad_provider_options_fail_loudly() -> None:
    with pytest.raises(NotConfigured, match="devcie"):
        DiffusersLocalProvider(ProviderSettings(options={"devcie": "cuda"}))


# -- text-to-image, seeds, cost ------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["tiny_sd3", "tiny_sd"])
def test_text_to_image_delivers_the_asked_size_and_records_the_call(family: str, request_fixture: Any) -> None:
    folder = request_fixture.getfixturevalue(family)
    # 100x72 is not a multiple of the pipelines' 16 (SD3: VAE x8 times patch 2) or 8 px: rendered larger,
    # then cropped.
    res = provider(price_per_cpu_hour=3.6).generate(request(folder, width=100, height=72, num_images=2))
    assert [(i.width, i.height) for i in res.images] == [(100, 72), (100, 72)]
    assert [i.to_pil().size for i in res.images] == [(100, 72), (100, 72)]
    assert [i.seed for i in res.images] == [7, 8] and res.seed == 7
    md = res.metadata
    assert md["device"] == "cpu" and md["dtype"] == "float32" and md["tiled"] is False
    assert md["render_size"][0] >= 100 and md["render_size"][0] % 8 == 0
    assert md["memory_ladder"] == [
        {
            "step": "base",
            "batch": 2,
            "tile_size": None,
            "outcome": "ok",
            "seconds": md["memory_ladder"][0]["seconds"],
        }
    ]
    # CPU seconds at 3.6 USD per core-hour: one thousandth of a dollar per second.
    assert md["cost_basis"]["clock"] == "cpu"
    assert res.cost_usd is not None
    assert res.cost_usd == pytest.approx(md["cost_basis"]["seconds"] / 1000, rel=0.01, abs=1e-6)
    assert res.cost_usd > 0 and res.latency_s > 0
    a, b = (pixels(i.data) for i in res.images)
    assert a.std() > 1 and np.abs(a - b).mean() > 1  # two seeds, two different images


def test_same_seed_same_pixels_whatever_the_batching(tiny_sd3: Path) -> None:
    p = provider()
    pair = p.generate(request(tiny_sd3, seed=11, num_images=2)).images
    again = p.generate(request(tiny_sd3, seed=11, num_images=2)).images
    second_alone = p.generate(request(tiny_sd3, seed=12)).images[0]
    assert [i.data for i in pair] == [i.data for i in again]
    # Each image has its own generator seeded seed + i, so image 1 of the pair is the seed-12 image.
    assert np.abs(pixels(pair[1].data) - pixels(second_alone.data)).max() <= 1
    assert np.abs(pixels(pair[0].data) - pixels(second_alone.data)).mean() > 1


def test_pipelines_are_cached_and_image_to_image_shares_the_weights(tiny_sd3: Path) -> None:
    p = provider()
    p.generate(request(tiny_sd3))
    first = loaded(tiny_sd3)
    init = p.generate(request(tiny_sd3)).images[0].data
    p.generate(request(tiny_sd3, operation="img2img", init_image=init, strength=0.5, steps=4))
    assert loaded(tiny_sd3) is first
    assert first.img2img.transformer is first.text2img.transformer
    assert type(first.img2img).__name__ == "StableDiffusion3Img2ImgPipeline"


# -- image-to-image handoff ----------------------------------------------------------------------------------


def _first_denoiser_input(folder: Path, init: bytes, strength: float, steps: int = 10) -> tuple[Any, int]:
    model = loaded(folder)
    seen: list[Any] = []

    def grab(_m: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        x = args[0] if args else kwargs.get("hidden_states", kwargs.get("sample"))
        assert x is not None
        seen.append(x.detach().clone())

    handle = model.denoiser.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        res = provider().generate(
            request(
                folder,
                operation="img2img",
                init_image=init,
                strength=strength,
                steps=steps,
                width=None,
                height=None,
            )
        )
    finally:
        handle.remove()
    assert (res.images[0].width, res.images[0].height) == Image.open(io.BytesIO(init)).size
    return seen[0], len(seen)


@pytest.mark.parametrize("family", ["tiny_sd3", "tiny_sd"])
def test_image_to_image_starts_from_the_previous_stage_image(family: str, request_fixture: Any) -> None:
    folder = request_fixture.getfixturevalue(family)
    rng = np.random.default_rng(0)
    a = np.zeros((64, 96, 3))
    a[..., 0] = np.linspace(0, 255, 96)[None]
    a[16:48, 32:64] = (20, 200, 60)
    b = rng.integers(0, 256, (64, 96, 3))
    model = loaded(folder)
    vae = model.text2img.vae

    def encoded(arr: np.ndarray) -> Any:
        x = torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
        with torch.no_grad():
            return vae.encode(x).latent_dist.mean

    dz = (encoded(a) - encoded(b))[0].flatten()
    dz_unrelated = (encoded(rng.integers(0, 256, (64, 96, 3))) - encoded(b))[0].flatten()
    scales = []
    for strength in (0.3, 0.7):
        xa, n = _first_denoiser_input(folder, png(a), strength)
        xb, _ = _first_denoiser_input(folder, png(b), strength)
        # The pipeline runs only the last `strength` of the schedule.
        assert n == int(10 * strength)
        # Same seed, same noise: the difference of the first latents is the (scaled) difference of the images.
        dx = (xa - xb)[0].flatten()
        # (The VAE samples its encoding, so the match is strong but not exact; an unrelated image is far off.)
        assert np.corrcoef(dx.numpy(), dz.numpy())[0, 1] > 0.8
        assert abs(np.corrcoef(dx.numpy(), dz_unrelated.numpy())[0, 1]) < 0.5
        scales.append(float(dx.norm() / dz.norm()))
    assert scales[0] > scales[1] > 0  # more strength, more noise, less of the previous image


def test_sd3_output_becomes_the_next_stage_input_across_families(tiny_sd3: Path, tiny_sd: Path) -> None:
    draft = provider().generate(request(tiny_sd3, width=80, height=48, seed=3)).images[0]
    final = provider().generate(
        request(
            tiny_sd,
            operation="img2img",
            init_image=draft.data,
            strength=0.6,
            steps=5,
            width=None,
            height=None,
            seed=3,
        )
    )
    other = provider().generate(
        request(
            tiny_sd,
            operation="img2img",
            init_image=png(255 - pixels(draft.data)),
            strength=0.6,
            steps=5,
            width=None,
            height=None,
            seed=3,
        )
    )
    assert (final.images[0].width, final.images[0].height) == (80, 48)
    assert final.metadata["pipeline"] == "StableDiffusionImg2ImgPipeline"
    assert np.abs(pixels(final.images[0].data) - pixels(other.images[0].data)).mean() > 0.5


def test_pipeline_rejections_become_bad_requests(tiny_sd3: Path) -> None:
    init = provider().generate(request(tiny_sd3)).images[0].data
    with pytest.raises(BadRequest, match="strength"):
        provider().generate(request(tiny_sd3, operation="img2img", init_image=init, strength=1.5, steps=4))
    with pytest.raises(BadRequest, match="not a readable image"):
        provider().generate(request(tiny_sd3, operation="img2img", init_image=b"not a png", steps=4))


def test_importing_the_provider_loads_neither_torch_nor_diffusers() -> None:
    import subprocess
    import sys

    code = (
        "import sys, image_gen.providers.diffusers_local as m; "
        "assert m.DiffusersLocalProvider.name == 'local'; "
        "print(sorted(x for x in ('torch', 'diffusers', 'transformers') if x in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_aspect_ratio_without_a_size_renders_around_the_native_area(tiny_sd3: Path) -> None:
    res = provider().generate(request(tiny_sd3, width=None, height=None, aspect_ratio="16:9"))
    img = res.images[0]
    assert img.width is not None and img.height is not None
    native = loaded(tiny_sd3).native_size  # 32 latent x VAE factor 8 = 256 px
    assert native == 256
    assert abs(img.width / img.height - 16 / 9) < 0.01
    assert abs(img.width * img.height - native * native) / native**2 < 0.02
    assert img.to_pil().size == (img.width, img.height)
