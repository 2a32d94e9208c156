"""Pure image geometry and I/O shared by the pipeline and the providers (a leaf: imports nothing of image_gen
above it): safe image opening under a pixel limit, tile plans and blend weights, label-text parsing."""
