"""Bundles for other tools: bioimage.io model packages and ONNX."""
