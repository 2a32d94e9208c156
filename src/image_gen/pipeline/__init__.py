"""The stage runner and what it uses: adapters, upscale (tile geometry is imaging's)."""
