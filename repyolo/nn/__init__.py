"""Networks: blocks, EfficientRep backbones, Rep-PAN necks, the decoupled head, the detector."""
from repyolo.nn.model import YOLOv6, available_models, build_model, load_model_config

__all__ = ["YOLOv6", "available_models", "build_model", "load_model_config"]
