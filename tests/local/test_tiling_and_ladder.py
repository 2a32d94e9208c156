"""Tiled (MultiDiffusion) generation and the out-of-memory ladder of the local provider, on tiny pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from image_gen.providers.base import ImageRequest, OutOfMemory
from image_gen.providers.diffusers_local import LocalOutOfMemory
from tests.local._helpers import loaded, local_request, pixels, provider

torch = pytest.importorskip("torch")
from image_gen.providers import _local_engine  # noqa: E402  (needs torch)


def request(folder: Path, **kw: Any) -> ImageRequest:
    return local_request(folder, **{"prompt": "a tin can", "seed": 5, **kw})


def outcomes(metadata: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["step"], e["outcome"]) for e in metadata["memory_ladder"]]


# -- tiled generation ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "size"), [("tiny_sd3", (160, 112)), ("tiny_sd", (136, 88))])
def test_tiled_generation_at_a_size_that_is_not_a_multiple_of_the_tile(
    family: str, size: tuple[int, int], request_fixture: pytest.FixtureRequest
) -> None:
    folder = request_fixture.getfixturevalue(family)
    width, height = size
    model = loaded(folder)
    # The first layer sees every tile: count the latent shapes that reach it.
    first_layer = getattr(model.denoiser, "pos_embed", None) or model.denoiser.conv_in
    shapes: list[tuple[int, ...]] = []
    handle = first_layer.register_forward_pre_hook(lambda _m, args: shapes.append(tuple(args[0].shape)))
    options = {"tile_size": 64, "overlap": 16, "tile_batch": 4}
    try:
        res = provider().generate(request(folder, width=width, height=height, steps=3, options=options))
    finally:
        handle.remove()
    md = res.metadata
    assert (res.images[0].width, res.images[0].height) == (width, height)
    assert res.images[0].to_pil().size == (width, height)
    assert md["tiled"] is True
    plan = md["tile_plan"]
    assert plan["tile_size"] == 64 and plan["overlap"] == 16 and plan["latent_scale"] == 8
    tiles = plan["tiles"]
    rw, rh = md["render_size"]
    # The tiles cover the rendered canvas exactly, overlap their neighbours and never leave it.
    cover = np.zeros((rh, rw), dtype=int)
    for x0, y0, x1, y1 in tiles:
        assert 0 <= x0 < x1 <= rw and 0 <= y0 < y1 <= rh and x1 - x0 <= 64 and y1 - y0 <= 64
        cover[y0:y1, x0:x1] += 1
    assert cover.min() >= 1 and cover.max() >= 2
    assert len(tiles) == len({tuple(t) for t in tiles}) > 1
    # Each step ran the denoiser on every tile (guidance doubles the batch), as 8x8 latents (64 px / VAE
    # factor 8) stacked at most 4 tiles a pass, never on the whole canvas.
    assert sum(n for n, *_ in shapes) == 3 * len(tiles) * 2
    assert {s[-2:] for s in shapes} == {(8, 8)}
    assert max(n for n, *_ in shapes) == 4 * 2
    assert len(shapes) == 3 * -(-len(tiles) // 4)
    assert "forward" not in model.denoiser.__dict__  # the tiled forward is gone after the call
    assert pixels(res.images[0].data).std() > 1


def test_tiled_generation_is_deterministic_and_one_tile_is_the_untiled_pipeline(tiny_sd3: Path) -> None:
    p = provider()
    tiled = [
        p.generate(request(tiny_sd3, width=160, height=112, options={"tile_size": 64, "overlap": 16})) for _ in range(2)
    ]
    assert tiled[0].images[0].data == tiled[1].images[0].data
    untiled = p.generate(request(tiny_sd3)).images[0]
    one_tile = p.generate(request(tiny_sd3, options={"tile_size": 128, "overlap": 16}))
    assert len(one_tile.metadata["tile_plan"]["tiles"]) == 1
    assert np.abs(pixels(untiled.data) - pixels(one_tile.images[0].data)).max() <= 1


@pytest.mark.parametrize(("blend", "tile_batch"), [("cosine", 1), ("linear", 3), ("gaussian", 8)])
def test_multidiffusion_blend_reproduces_a_pointwise_denoiser_exactly(blend: str, tile_batch: int) -> None:
    # A 1x1 convolution sees one latent pixel at a time, so tiling must not change its output at all: the
    # blend weights of overlapping tiles add to exactly 1 everywhere, and tiles stacked on the batch axis get
    # their own sample's conditioning (here a per-sample scale) repeated in the same order.
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(4, 4, kernel_size=1)
    x = torch.randn(2, 4, 37, 29)
    scale = torch.tensor([1.0, -3.0]).view(2, 1, 1, 1)

    def forward(sample: Any, timestep: Any, cond: Any, return_dict: bool = True) -> Any:
        assert sample.shape[0] == cond["scale"].shape[0] and sample.shape[-1] <= 12
        return (conv(sample) * cond["scale"],)

    tiled = _local_engine.multidiffusion_forward(forward, tile=12, overlap=3, blend=blend, tile_batch=tile_batch)
    with torch.no_grad():
        want = conv(x) * scale
        got = tiled(x, torch.tensor(0), {"scale": scale}, return_dict=False)[0]
        assert torch.allclose(got, want, atol=1e-5)
        got = tiled(sample=x, timestep=torch.tensor(0), cond={"scale": scale})[0]
        assert torch.allclose(got, want, atol=1e-5)


def test_tiled_decode_of_one_tile_is_the_vae_decode(tiny_sd3: Path) -> None:
    vae = loaded(tiny_sd3).text2img.vae
    torch.manual_seed(1)
    z = torch.randn(1, 4, 6, 9)
    plan = _local_engine.AttemptPlan(tile_size=128, overlap=16)
    with torch.no_grad():
        ref = vae.decode(z / vae.config.scaling_factor + vae.config.shift_factor).sample
    ref_px = ((ref[0].clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    got = np.asarray(_local_engine.decode_tiled(vae, z, plan, 8)[0]).astype(float)
    assert got.shape == (48, 72, 3)
    assert np.abs(got - ref_px).max() <= 1


# -- the memory ladder ---------------------------------------------------------------------------------------


def test_ladder_steps_down_to_tiling_records_each_rung_and_remembers_it(tiny_sd3: Path) -> None:
    p = provider(oom_inject=["base", "vae_tiling"])
    res = p.generate(request(tiny_sd3, width=160, height=112))
    assert outcomes(res.metadata) == [
        ("base", "oom"),
        ("vae_tiling", "oom"),
        ("cpu_offload", "skipped"),
        ("tiled", "ok"),
    ]
    ladder = res.metadata["memory_ladder"]
    assert "out of memory" in ladder[0]["detail"].lower()
    assert "main memory" in ladder[2]["detail"]
    assert res.metadata["tiled"] is True and len(res.metadata["tile_plan"]["tiles"]) > 1
    assert (res.images[0].width, res.images[0].height) == (160, 112)
    assert "forward" not in loaded(tiny_sd3).denoiser.__dict__
    # Same model and size: start at the rung that worked, with no failed attempt.
    again = p.generate(request(tiny_sd3, width=160, height=112, seed=9))
    assert again.metadata["memory_ladder"][0]["detail"] == "remembered"
    assert outcomes(again.metadata) == [("tiled", "ok")]
    assert again.metadata["tile_plan"] == res.metadata["tile_plan"]
    # Another size is a new question: the ladder starts at the top.
    other = p.generate(request(tiny_sd3, width=128, height=96))
    assert outcomes(other.metadata)[0] == ("base", "oom")


def test_smaller_batch_rung_halves_images_per_pass_without_changing_pixels(tiny_sd3: Path) -> None:
    every_rung = {"steps": ["base", "vae_tiling", "cpu_offload", "tiled", "smaller_batch"], "batch_above": 1}
    res = provider(oom_inject=every_rung).generate(request(tiny_sd3, width=128, height=96, num_images=3))
    assert outcomes(res.metadata) == [
        ("base", "oom"),
        ("vae_tiling", "oom"),
        ("cpu_offload", "skipped"),
        ("tiled", "oom"),
        *[("smaller_batch", "oom")] * 3,
        ("smaller_batch", "ok"),
    ]
    # Images per pass halve to one, then latent tiles per pass (default 4) halve to one.
    ladder = res.metadata["memory_ladder"]
    assert [e.get("batch") for e in ladder] == [3, 3, None, 3, 2, 1, 1, 1]
    assert [e.get("tile_batch") for e in ladder] == [None, None, None, 4, 4, 4, 2, 1]
    assert res.metadata["tiled"] is True
    # The same rung's tiles with all three images and four tiles in one pass give the same pixels (one
    # generator per image; tiles blend the same whatever their grouping).
    direct = provider().generate(
        request(tiny_sd3, width=128, height=96, num_images=3, options={"memory_ladder_start": "tiled"})
    )
    assert outcomes(direct.metadata) == [("tiled", "ok")]
    for a, b in zip(res.images, direct.images, strict=True):
        assert a.seed == b.seed
        assert np.abs(pixels(a.data) - pixels(b.data)).max() <= 1


def test_exhausted_ladder_raises_out_of_memory_with_the_rungs_tried(tiny_sd3: Path) -> None:
    p = provider(oom_inject=["base", "vae_tiling", "cpu_offload", "tiled", "smaller_batch"], tile_batch=1)
    with pytest.raises(LocalOutOfMemory) as info:
        p.generate(request(tiny_sd3, width=128, height=96))
    err = info.value
    assert isinstance(err, OutOfMemory) and not err.retryable
    assert [(e["step"], e["outcome"]) for e in err.memory_ladder] == [
        ("base", "oom"),
        ("vae_tiling", "oom"),
        ("cpu_offload", "skipped"),
        ("tiled", "oom"),
        ("smaller_batch", "skipped"),
    ]
    assert "every rung" in str(err) and err.cost_usd > 0
    # Nothing is remembered from a failure: a call without the injected errors starts at the top and works.
    ok = provider().generate(request(tiny_sd3, width=128, height=96))
    assert outcomes(ok.metadata) == [("base", "ok")]


def test_ladder_start_option_skips_the_rungs_above(tiny_sd3: Path) -> None:
    res = provider().generate(request(tiny_sd3, width=128, height=96, options={"memory_ladder_start": "vae_tiling"}))
    assert outcomes(res.metadata) == [("vae_tiling", "ok")]
    assert res.metadata["tiled"] is False
    assert loaded(tiny_sd3).text2img.vae.use_tiling  # diffusers' VAE tiling and slicing were on for that call
    provider().generate(request(tiny_sd3, width=128, height=96))
    assert not loaded(tiny_sd3).text2img.vae.use_tiling


@pytest.mark.parametrize(
    ("exc", "oom"),
    [
        (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
        (RuntimeError("MPS backend out of memory (MPS allocated: 17.2 GB)"), True),
        (
            RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
            True,
        ),
        (MemoryError(), True),
        (RuntimeError("mat1 and mat2 shapes cannot be multiplied"), False),
        (ValueError("out of range"), False),
    ],
)
def test_out_of_memory_is_recognised_on_every_device(exc: BaseException, oom: bool) -> None:
    assert _local_engine.is_out_of_memory(exc) is oom


def test_a_real_error_is_not_walked_down_the_ladder(tiny_sd3: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from image_gen.providers.base import ProviderError

    model = loaded(tiny_sd3)

    def broken(*_a: Any, **_k: Any) -> Any:
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(model.denoiser, "forward", broken)
    with pytest.raises(ProviderError, match="shapes cannot be multiplied") as info:
        provider().generate(request(tiny_sd3))
    assert not isinstance(info.value, OutOfMemory)
