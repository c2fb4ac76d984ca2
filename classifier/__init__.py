"""Bounce detection, extraction and classification (ONNX model run with onnxruntime).

Public API for the milter: BounceClassifier.load(path).analyse(bytes) -> BounceReport, header_value().
"""

from .analyse import BounceClassifier, default_model_path
from .model import ModelError
from .verdict import BounceReport, RecipientVerdict, header_value

__all__ = ["BounceClassifier", "BounceReport", "ModelError", "RecipientVerdict", "default_model_path",
           "header_value"]
