"""Developer tools run from a checkout (not shipped in the image_gen package)."""
