"""Tiny, randomly initialised diffusers pipelines written to a folder, for tests, benchmarks and smoke checks.

Built from configs alone (the pattern of diffusers' own ``get_dummy_components()``), with a CLIP tokenizer
whose byte-level vocabulary is written here, so nothing touches a model hub. The pipelines produce
noise-like images; they exercise the real loading, text encoding, denoising, scheduling and VAE code of the
full-size models.

- :func:`save_tiny_sd3` writes an SD3-style pipeline: an ``SD3Transformer2DModel``, two CLIP text encoders
  with projection (no T5: the pipeline pads with zeros), a flow-matching scheduler and a VAE with scale
  factor 8.
- :func:`save_tiny_sd` writes an SD 1.x-style pipeline: a ``UNet2DConditionModel``, one CLIP text encoder, an
  Euler scheduler and a VAE with scale factor 8.

torch, transformers and diffusers are imported inside the functions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MAX_TOKENS = 77


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def write_clip_tokenizer(folder: Path) -> int:
    """Write a byte-level CLIP tokenizer (vocab.json, merges.txt) to ``folder``; return its vocabulary size.

    Every byte is a token, alone and as a word end (``</w>``); a few merges of common English pairs make the
    BPE step do real work.
    """
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    merges = [("t", "h"), ("th", "e</w>"), ("a", "n"), ("i", "n"), ("o", "n</w>")]
    vocab_list = [*chars, *(c + "</w>" for c in chars), *("".join(m) for m in merges), BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8"
    )
    tok = CLIPTokenizer(
        vocab=str(folder / "vocab.json"),
        merges=str(folder / "merges.txt"),
        model_max_length=MAX_TOKENS,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=EOS,
        unk_token=EOS,
    )
    tok.save_pretrained(str(folder))
    return len(vocab)


def _clip_config(vocab_size: int, tok: Any, hidden: int, projection: int | None) -> Any:
    from transformers import CLIPTextConfig

    kw: dict[str, Any] = {"projection_dim": projection} if projection else {}
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        hidden_act="gelu",
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **kw,
    )


def _vae(latent_channels: int, width: int, *, sd3: bool) -> Any:
    from diffusers import AutoencoderKL

    kw: dict[str, Any] = (
        {
            "shift_factor": 0.0609,
            "scaling_factor": 1.5035,
            "use_quant_conv": False,
            "use_post_quant_conv": False,
        }
        if sd3
        else {"scaling_factor": 0.18215}
    )
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=latent_channels,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(width,) * 4,
        layers_per_block=1,
        norm_num_groups=4,
        sample_size=64,
        **kw,
    )


def _tokenizer(folder: Path) -> tuple[Any, int]:
    from transformers import CLIPTokenizer

    vocab_size = write_clip_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(str(folder)), vocab_size


def save_tiny_sd3(
    folder: Path,
    *,
    heads: int = 4,
    head_dim: int = 8,
    layers: int = 1,
    vae_width: int = 8,
    pos_embed_max_size: int = 96,
    seed: int = 0,
) -> Path:
    """Write a tiny SD3-style text-to-image pipeline to ``folder`` (``save_pretrained`` layout); return it."""
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline
    from transformers import CLIPTextModelWithProjection

    folder = Path(folder)
    tok, vocab_size = _tokenizer(folder / "tokenizer")
    torch.manual_seed(seed)
    hidden = 32
    transformer = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=4,
        out_channels=4,
        num_layers=layers,
        attention_head_dim=head_dim,
        num_attention_heads=heads,
        caption_projection_dim=heads * head_dim,
        joint_attention_dim=2 * hidden,
        pooled_projection_dim=2 * hidden,
        pos_embed_max_size=pos_embed_max_size,
    )
    cfg = _clip_config(vocab_size, tok, hidden, hidden)
    text_encoder = CLIPTextModelWithProjection(cfg)
    text_encoder_2 = CLIPTextModelWithProjection(cfg)
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        vae=_vae(4, vae_width, sd3=True),
        text_encoder=text_encoder,
        tokenizer=tok,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tok,
        text_encoder_3=None,
        tokenizer_3=None,
    )
    pipe.save_pretrained(str(folder))  # type: ignore[attr-defined]
    return folder


def save_tiny_sd(folder: Path, *, vae_width: int = 8, seed: int = 0) -> Path:
    """Write a tiny SD 1.x-style (UNet) text-to-image pipeline to ``folder`` and return it."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    folder = Path(folder)
    tok, vocab_size = _tokenizer(folder / "tokenizer")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
        norm_num_groups=4,
    )
    text_encoder = CLIPTextModel(_clip_config(vocab_size, tok, 32, None))
    pipe = StableDiffusionPipeline(
        unet=unet,
        scheduler=EulerDiscreteScheduler(
            beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, timestep_spacing="trailing"
        ),
        vae=_vae(4, vae_width, sd3=False),
        text_encoder=text_encoder,
        tokenizer=tok,
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder))  # type: ignore[attr-defined]
    return folder
