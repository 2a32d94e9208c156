"""The model catalog: aliases, prices as data, retired models and largest-available."""

from __future__ import annotations

import pytest

from image_gen.catalog import Catalog, UnknownModel


def test_every_vendor_model_is_listed_with_a_dated_price() -> None:
    cat = Catalog.load()
    for mid in ("ideogram-v1-turbo", "ideogram-v2a", "ideogram-v2a-turbo", "ideogram-v3", "imagen-4",
                "gemini-2.5-flash-image", "gemini-3-pro-image", "sd3.5-medium", "sd3.5-large",
                "sd3.5-large-turbo", "stability-upscale-creative"):
        e = cat.resolve(mid)
        assert e.price_per_image is not None and e.price_read_on


def test_aliases_resolve() -> None:
    cat = Catalog.load()
    assert cat.resolve("imagen4").id == "imagen-4"
    assert cat.resolve("IMAGEN4").id == "imagen-4"
    assert cat.resolve("sd35-medium").id == "sd3.5-medium"


def test_imagen4_is_retired_with_a_successor() -> None:
    e = Catalog.load().resolve("imagen4")
    assert e.retired and e.retired_on == "2026-08-17"
    assert Catalog.load().successor_of(e) is not None


def test_unknown_model_suggests() -> None:
    with pytest.raises(UnknownModel, match="did you mean"):
        Catalog.load().resolve("ideogram-v2b")


def test_sim_twin_keeps_price_and_latency() -> None:
    cat = Catalog.load()
    twin = cat.resolve("sim:sd3.5-medium")
    real = cat.resolve("sd3.5-medium")
    assert twin.provider == "sim" and twin.price_per_image == real.price_per_image
    assert twin.latency_s == real.latency_s


def test_largest_available_depends_on_configured_providers() -> None:
    cat = Catalog.load()
    best = cat.largest_available(["sim"])
    assert not best.retired and best.fidelity == max(e.fidelity for e in cat.entries.values() if not e.retired)
    assert cat.largest_available(["stability"]).provider == "stability"


def test_user_overrides_and_additions() -> None:
    cat = Catalog.load({"sd3.5-medium": {"price_per_image": 0.01},
                        "my-model": {"provider": "stability", "vendor_model": "x", "price_per_image": 0.5}})
    assert cat.resolve("sd3.5-medium").price_per_image == 0.01
    assert cat.resolve("my-model").price_for(1024, 1024, 2) == 1.0


def test_prices_by_size() -> None:
    """Gemini 3 Pro Image is priced by imageSize (1K/2K vs 4K) and renders 4096x4096 natively; FLUX.2 by megapixel."""
    cat = Catalog.load()
    pro = cat.resolve("gemini-3-pro-image")
    assert [pro.size_for(s, s).name for s in (1024, 2048, 4096)] == ["1K", "2K", "4K"]  # type: ignore[union-attr]
    assert pro.price_for(1024, 1024) == pro.price_for(2048, 2048) == 0.134 and pro.price_for(4096, 4096) == 0.24
    assert pro.price_for(4096, 4096, num_images=2) == 0.48 and pro.native_megapixels * 1e6 >= 4096 * 4096
    flux = cat.resolve("flux-2-pro")
    assert flux.price_for(1024, 1024) == 0.03 and flux.price_for(2048, 2048) == 0.075
    assert flux.price_for(8192, 8192) == 0.075  # beyond the largest size: the largest (the vendor renders 4 MP)
    assert cat.resolve("flux-pro-1.1-ultra").price_for(2752, 1536) == 0.06
    # a user's flat price replaces the catalog's prices by size
    mine = Catalog.load({"gemini-3-pro-image": {"price_per_image": 0.2}}).resolve("gemini-3-pro-image")
    assert mine.size_prices == () and mine.price_for(4096, 4096) == 0.2


def test_gemini_provider_asks_the_size_the_catalog_prices() -> None:
    from image_gen.providers.google import image_size_for

    cat = Catalog.load()
    for model in ("gemini-3-pro-image", "gemini-3.1-flash-image"):
        entry = cat.resolve(model)
        for w, h in [(512, 512), (1024, 1024), (1264, 848), (1376, 768), (1100, 1100), (2048, 1152), (2752, 1536),
                     (3000, 3000), (4096, 4096), (5504, 3072), (8000, 8000)]:
            assert image_size_for(w, h) == entry.size_for(w, h).name, (model, w, h)  # type: ignore[union-attr]
