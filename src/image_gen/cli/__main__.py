"""``python -m image_gen.cli``."""

from image_gen.cli import main

main()
