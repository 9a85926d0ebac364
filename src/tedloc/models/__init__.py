"""Models: frozen timm encoders (any name, local weights), tedloc's small CNNs."""
from tedloc.models.cnn import TinyResNet
from tedloc.models.encoders import EncoderInfo, FrozenEncoder, create_encoder
from tedloc.models.preprocessing import preprocessing_of

__all__ = ["FrozenEncoder", "create_encoder", "EncoderInfo", "TinyResNet", "preprocessing_of"]
