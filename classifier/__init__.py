"""Bounce detection, extraction and classification (ONNX model run with onnxruntime)."""
