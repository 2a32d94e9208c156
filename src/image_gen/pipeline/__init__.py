"""The stage runner and what it uses: tiling, adapters, upscale."""
