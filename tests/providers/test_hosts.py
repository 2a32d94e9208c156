"""OpenAI, fal and Replicate beyond the shared fault table: how they are wired in (entry points, ``providers``
status, model ids that resolve without a catalog entry and need a price), what each sends on the wire, polling
through rate limits and slow queues, and the staged pipeline end to end with the hires stage on each host."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from image_gen.catalog import Catalog, missing_price
from image_gen.providers.base import BadRequest, ImageRequest, ProviderSettings, RateLimited, Transient
from image_gen.providers.fal import FalProvider, app_path
from image_gen.providers.openai_images import OpenAIImagesProvider, fit_size, token_cost
from image_gen.providers.replicate import ReplicateProvider, parse_model
from tests.fakes import render_png
from tests.fakes.fal import FakeFal
from tests.fakes.host_fixtures import FAL_KEY, HOST_KEYS, HOST_PROVIDERS, OPENAI_KEY, REPLICATE_KEY
from tests.fakes.openai import FakeOpenAI
from tests.fakes.replicate import VERSIONS, FakeReplicate
from tests.providers._cli import assert_no_key_anywhere, rows

ROOT = Path(__file__).resolve().parents[2]
PROMPT = 'Studio photo of a bottle, label reads "AQUA PURE"'
VERSION = next(iter(VERSIONS))
CUSTOM = f"replicate:acme/label-refiner:{VERSION}"


# -- wiring ------------------------------------------------------------------------------------------


def test_pyproject_registers_the_providers_and_pins_the_sdk() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {k: v for k, v in project["entry-points"]["image_gen.providers"].items() if k in HOST_PROVIDERS} == (
        HOST_PROVIDERS
    )
    assert "openai==3.57.0" in project["dependencies"]
    from importlib.metadata import version

    assert version("openai") == "3.57.0"  # the version the provider and its fake were written against


def test_providers_command_lists_them_without_keys(monkeypatch: pytest.MonkeyPatch, host_env: dict[str, str]) -> None:
    from image_gen.cli import cli

    monkeypatch.setenv("FAL_QUEUE_BASE_URL", f"http://user:{FAL_KEY}@127.0.0.1:9/q?key={FAL_KEY}")
    monkeypatch.delenv("REPLICATE_API_TOKEN")
    out = CliRunner().invoke(cli, ["providers", "--json"])
    assert out.exit_code == 0, out.output
    got = {r["name"]: r for r in json.loads(out.output)["providers"]}
    assert got["openai"]["configured"] and got["openai"]["key_from"] == "OPENAI_API_KEY"
    assert got["fal"]["configured"] and got["fal"]["base_url"] == "http://127.0.0.1:9/q"
    assert not got["replicate"]["configured"] and got["replicate"]["key_vars"] == ["REPLICATE_API_TOKEN"]
    assert not any(k in out.output for k in HOST_KEYS)


def test_hosted_ids_resolve_without_a_catalog_entry_and_need_a_price() -> None:
    cat = Catalog.load({"fal:acme/upscaler": {"price_per_megapixel": 0.01, "capabilities": ["img2img"]}})
    entry = cat.resolve("fal:acme/upscaler")
    assert (entry.provider, entry.vendor_model, entry.price_per_megapixel) == ("fal", "acme/upscaler", 0.01)
    assert missing_price(entry) is None
    bare = cat.resolve(CUSTOM)
    assert (bare.provider, bare.vendor_model) == ("replicate", CUSTOM.removeprefix("replicate:"))
    assert missing_price(bare) == f'models."{CUSTOM}".price_per_image'
    assert missing_price(cat.resolve("fal:fal-ai/flux/dev")) is None  # priced in the catalog
    for bad in ("fal:", "fal:flux", "replicate:owner/", "replicate:a b/c"):
        with pytest.raises(KeyError):
            cat.resolve(bad)
    assert parse_model(f"acme/label-refiner:{VERSION}") == ("acme", "label-refiner", VERSION)
    assert app_path("fal-ai/flux/dev/image-to-image") == "fal-ai/flux"
    assert app_path("workflows/acme/pipe/step") == "workflows/acme/pipe"


def test_catalog_dates_openai_models_and_names_successors() -> None:
    cat = Catalog.load()
    for mid in ("gpt-image-2", "gpt-image-2-2026-04-21", "gpt-image-1.5", "gpt-image-1-mini"):
        e = cat.resolve(mid)
        assert e.provider == "openai" and e.price_read_on and not e.retired and e.options["token_prices"]
    for mid, successor in (("gpt-image-1", "gpt-image-2.5-sunburst"), ("dall-e-3", "gpt-image-2")):
        e = cat.resolve(mid)
        assert e.retired and e.retired_on and e.successor == successor and not cat.resolve(successor).retired
    assert cat.largest_available(["sim"]).id == "gemini-3-pro-image"  # the OpenAI entries leave the ranking alone


# -- OpenAI on the wire ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "sent"),
    [
        ((256, 256), (816, 816)),
        ((1920, 1080), (1920, 1072)),
        ((8000, 1000), (3840, 1280)),
        ((4096, 4096), (2880, 2880)),
    ],
)
def test_gpt_image_2_sizes_fit_the_models_limits(asked: tuple[int, int], sent: tuple[int, int]) -> None:
    w, h = fit_size(*asked)
    assert (w, h) == sent
    assert w % 16 == 0 and h % 16 == 0 and 655_360 <= w * h <= 8_294_400 and max(w, h) <= 3840
    assert 1 / 3 <= w / h <= 3


def test_openai_generate_and_edit_send_what_the_api_takes(
    fake_openai: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    prices = Catalog.load().resolve("gpt-image-2").options["token_prices"]
    provider = OpenAIImagesProvider(ProviderSettings(base_url=fake_openai.url + "/v1", timeout_s=20))
    result = provider.generate(ImageRequest(
        model="gpt-image-2", vendor_model="gpt-image-2", prompt=PROMPT, width=1920, height=1080, seed=7,
        options={"quality": "high", "token_prices": prices},
    ))
    (gen,) = fake_openai.calls("/images/generations")
    assert gen.json == {"prompt": PROMPT, "model": "gpt-image-2", "n": 1, "quality": "high",
                        "output_format": "png", "size": "1920x1072"}
    assert result.cost_usd == pytest.approx(fake_openai.billed_usd) and result.cost_usd > 0.1  # high, 2 MP
    assert result.request_id and result.metadata["usage"]["output_image_tokens"] > 0
    assert result.metadata["seed_not_sent"] == 7
    init = render_png("draft", (96, 64))
    result = provider.generate(ImageRequest(
        model="gpt-image-1.5", vendor_model="gpt-image-1.5", prompt=PROMPT, operation="img2img", init_image=init,
        strength=0.4, width=1200, height=800, options={"quality": "low", "input_fidelity": "high"},
    ))
    (edit,) = fake_openai.calls("/images/edits")
    assert edit.form["size"] == "1536x1024" and edit.form["input_fidelity"] == "high"
    assert edit.file_sha("image") == __import__("hashlib").sha256(init).hexdigest()
    assert edit.file_types["image"] == "image/png"
    assert result.cost_usd is None and result.metadata["strength_not_sent"] == 0.4  # no prices given
    assert all(r.auth_ok for r in fake_openai.records)
    assert token_cost({"input_tokens": 10, "output_tokens": 1000}, {"text_input": 5, "image_output": 30}) == (
        pytest.approx(0.03005)
    )


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"<html>502 Bad Gateway</html>", "text/html"), (b'{"created": 1, "data": []}', "application/json")],
)
def test_openai_200_without_an_image_may_have_been_billed(
    body: bytes, content_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    sent: list[httpx.Request] = []

    def answer(req: httpx.Request) -> httpx.Response:
        sent.append(req)
        return httpx.Response(200, content=body, headers={"content-type": content_type})

    client = httpx.Client(transport=httpx.MockTransport(answer))
    provider = OpenAIImagesProvider(ProviderSettings(base_url="http://openai.test/v1", http_client=client))
    with pytest.raises(Transient) as info:
        provider.generate(ImageRequest(model="gpt-image-2", vendor_model="gpt-image-2", prompt=PROMPT))
    assert info.value.maybe_billed and not info.value.billed and len(sent) == 1  # one attempt: no SDK retry
    assert sent[0].headers["authorization"] == f"Bearer {OPENAI_KEY}" and OPENAI_KEY not in str(info.value)


# -- fal and Replicate on the wire -------------------------------------------------------------------


def test_fal_polls_through_rate_limits_and_maps_the_input(fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    fake_fal.polls_to_finish = 3
    fake_fal.poll_faults = [429, 503]
    provider = FalProvider(ProviderSettings(base_url=fake_fal.url, timeout_s=10, options={"poll_interval_s": 0.02}))
    result = provider.generate(ImageRequest(
        model="fal:fal-ai/flux/dev", vendor_model="fal-ai/flux/dev", prompt=PROMPT, width=512, height=384, seed=9,
        steps=28, guidance_scale=3.5,
    ))
    (sub,) = fake_fal.calls("/fal-ai/flux/dev")
    assert sub.json == {"prompt": PROMPT, "seed": 9, "num_inference_steps": 28, "guidance_scale": 3.5,
                        "image_size": {"width": 512, "height": 384}}
    polls = fake_fal.calls("/status")
    assert [p.status for p in polls][:2] == [429, 503] and len(polls) == 6
    assert result.seed == 9 and result.images[0].width == 128  # the fake renders at a quarter size
    assert len(fake_fal.calls("/files/")) == 1 and fake_fal.billed_calls == 1


def test_fal_refuses_a_field_the_endpoint_does_not_take(fake_fal: FakeFal, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAL_KEY", FAL_KEY)
    provider = FalProvider(ProviderSettings(base_url=fake_fal.url, timeout_s=10))
    with pytest.raises(BadRequest, match="HTTP 422.*negative_prompt"):
        provider.generate(ImageRequest(model="fal:fal-ai/flux/dev", vendor_model="fal-ai/flux/dev", prompt=PROMPT,
                                       negative_prompt="blurry"))
    # options.fields drops it (or renames it) for such a model
    result = provider.generate(ImageRequest(
        model="fal:fal-ai/flux/dev", vendor_model="fal-ai/flux/dev", prompt=PROMPT, negative_prompt="blurry",
        options={"fields": {"negative_prompt": ""}, "poll_interval_s": 0.02},
    ))
    assert result.metadata["not_sent"] == ["negative_prompt"] and fake_fal.billed_calls == 1


@pytest.mark.timing
@pytest.mark.parametrize("host", ["fal", "replicate"])
def test_slow_queue_ends_at_the_deadline_and_is_cancelled(
    host: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = request.getfixturevalue(f"fake_{host}")
    fake.polls_to_finish = -1
    if host == "fal":
        monkeypatch.setenv("FAL_KEY", FAL_KEY)
        provider: Any = FalProvider(ProviderSettings(base_url=fake.url, timeout_s=0.8,
                                                     options={"poll_interval_s": 0.05}))
        req = ImageRequest(model="fal:fal-ai/flux/dev", vendor_model="fal-ai/flux/dev", prompt=PROMPT)
    else:
        monkeypatch.setenv("REPLICATE_API_TOKEN", REPLICATE_KEY)
        provider = ReplicateProvider(ProviderSettings(base_url=fake.url, timeout_s=0.8,
                                                      options={"poll_interval_s": 0.05}))
        req = ImageRequest(model=CUSTOM, vendor_model=CUSTOM.removeprefix("replicate:"), prompt=PROMPT)
    with pytest.raises(Transient) as info:
        provider.generate(req)
    err = info.value
    assert err.maybe_billed and not err.billed and err.request_id and "deadline" in str(err)
    assert len(fake.calls("/cancel")) == 1 and fake.billed_calls == 0  # cancelled while queued: refunded
    assert sum(1 for r in fake.request_log if r.method == "POST" and "/cancel" not in r.path) == 1


def test_replicate_by_version_waits_then_polls(fake_replicate: FakeReplicate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", REPLICATE_KEY)
    fake_replicate.polls_to_finish = 2
    fake_replicate.poll_faults = [429]
    provider = ReplicateProvider(ProviderSettings(base_url=fake_replicate.url, timeout_s=10,
                                                  options={"poll_interval_s": 0.02}))
    init = render_png("final", (80, 80))
    result = provider.generate(ImageRequest(
        model=CUSTOM, vendor_model=CUSTOM.removeprefix("replicate:"), prompt=PROMPT, operation="img2img",
        init_image=init, strength=0.3, seed=5, steps=30,
    ))
    (create,) = fake_replicate.calls("/v1/predictions")[:1]
    assert create.path == "/v1/predictions" and create.json["version"] == VERSION
    assert set(create.json["input"]) == {"prompt", "image", "prompt_strength", "seed"}
    assert create.json["input"]["prompt_strength"] == 0.3 and "prefer" in create.header_names
    assert result.metadata["polls"] == 4 and result.metadata["not_sent"] == ["steps"]
    assert result.images[0].width == 80 and fake_replicate.billed_calls == 1


def test_a_429_answer_says_when_to_come_back(fake_replicate: FakeReplicate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REPLICATE_API_TOKEN", REPLICATE_KEY)
    fake_replicate.retry_after = "12"
    fake_replicate.faults.force("429")
    provider = ReplicateProvider(ProviderSettings(base_url=fake_replicate.url, timeout_s=5))
    with pytest.raises(RateLimited) as info:
        provider.generate(ImageRequest(model="replicate:black-forest-labs/flux-schnell",
                                       vendor_model="black-forest-labs/flux-schnell", prompt=PROMPT))
    assert info.value.retry_after == 12.0 and fake_replicate.billed_calls == 0


# -- the staged pipeline with the hires stage on each host ------------------------------------------

STAGED = """
[pipeline]
model = "staged-selection"
stages = ["draft:sim:ideogram-v1-turbo", "layout:sim:ideogram-v2a", "final:sim:sd3.5-medium", "hires:{hires}"]
width = 256
height = 256
[pipeline.qa]
enabled = false
[stage.draft]
seed = 42
[stage.layout]
strength = 0.6
[stage.final]
strength = 0.35
[stage.hires]
strength = 0.3
{options}
[budget]
per_run_usd = 2.00
[retry]
initial_s = 0
max_s = 0
{models}
"""
HIRES = {
    "openai": ("gpt-image-2", 'options = { quality = "low" }', "", "/v1/images/edits"),
    "fal": ("fal:fal-ai/flux/dev/image-to-image", "options = { poll_interval_s = 0.02 }", "",
            "/fal-ai/flux/dev/image-to-image"),
    "replicate": (CUSTOM, "options = { poll_interval_s = 0.02 }", f'[models."{CUSTOM}"]\nprice_per_image = 0.01\n',
                  "/v1/predictions"),
}


def _run(
    tmp_path: Path, host: str, capsys: pytest.CaptureFixture[str], *, priced: bool = True
) -> tuple[int, str, Path]:
    """``image-gen run`` in this process (the installed command may predate the providers' entry points)."""
    from image_gen.cli import main

    model, options, models, _ = HIRES[host]
    cfg = tmp_path / "staged.toml"
    cfg.write_text(STAGED.format(hires=model, options=options, models=models if priced else ""))
    (tmp_path / "prompts.txt").write_text(PROMPT + "\n")
    ws = tmp_path / "ws"
    capsys.readouterr()
    try:
        main(["run", "--config", str(cfg), "--prompt-file", str(tmp_path / "prompts.txt"), "--workspace", str(ws),
              "--json"])
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err, ws


@pytest.mark.parametrize("host", ["openai", "fal", "replicate"])
def test_staged_pipeline_runs_its_hires_stage_on_each_host(
    host: str, tmp_path: Path, host_env: dict[str, str], request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake = request.getfixturevalue(f"fake_{host}")
    code, output, ws = _run(tmp_path, host, capsys)
    assert code == 0, output
    stages = {r["name"]: r for r in rows(ws, "SELECT name, status, artifact_sha FROM stage_runs")}
    assert all(s["status"] == "done" for s in stages.values()), stages
    path = HIRES[host][3]
    (sent,) = [r for r in fake.request_log if r.method == "POST" and r.path == path]
    image = sent.files.get("image") if host == "openai" else None
    if image is None:  # fal and Replicate take the image as a data URI in the JSON input
        from tests.fakes._hosted import decode_data_uri

        inp = sent.json.get("input", sent.json)
        image = decode_data_uri(inp.get("image_url") or inp["image"])
    assert __import__("hashlib").sha256(image).hexdigest() == stages["final"]["artifact_sha"]
    (call,) = rows(ws, "SELECT provider, model_id, state, cost_usd, meta FROM calls WHERE provider = ?", host)
    assert call["state"] == "ok" and call["model_id"] == HIRES[host][0]
    assert call["cost_usd"] == pytest.approx(fake.billed_usd, rel=1e-3)  # usage-priced, catalog or user price
    assert all(r.auth_ok for r in fake.request_log if not r.path.startswith("/files/"))
    downloads = [r for r in fake.request_log if r.path.startswith("/files/")]
    assert bool(downloads) is (host != "openai")  # OpenAI answers base64; the hosts' outputs are fetched at once
    if host == "fal":  # fal's CDN never gets the key (Replicate's does only for URLs on its API's origin, as here)
        assert all("authorization" not in r.header_names for r in downloads)
    assert_no_key_anywhere(ws, [], HOST_KEYS)
    assert not any(k in output for k in HOST_KEYS)


def test_a_hosted_model_without_a_price_exits_2_before_any_call(
    tmp_path: Path, host_env: dict[str, str], fake_replicate: FakeReplicate, capsys: pytest.CaptureFixture[str]
) -> None:
    code, output, _ = _run(tmp_path, "replicate", capsys, priced=False)
    assert code == 2, output
    assert f'models.\\"{CUSTOM}\\".price_per_image' in output  # the field, in the JSON error
    assert fake_replicate.request_log == []
