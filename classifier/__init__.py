"""Bounce detection, extraction and classification (ONNX model run with onnxruntime).

Public API for the milter: BounceClassifier.load(path).analyse(bytes, envelope=EnvelopeFacts(...)) -> BounceReport,
header_value(). Importing it brings no milter dependency (pymilter, pyspf, dnspython, prometheus).
"""

from .analyse import BounceClassifier, default_model_path
from .envelope import EnvelopeFacts
from .model import ModelError
from .verdict import BounceReport, RecipientVerdict, header_value

__all__ = ["BounceClassifier", "BounceReport", "EnvelopeFacts", "ModelError", "RecipientVerdict",
           "default_model_path", "header_value"]
