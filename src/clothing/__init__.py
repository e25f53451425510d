"""Code shared by the pipeline's stages: params, files, images, models."""
