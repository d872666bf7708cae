"""Packing: feature tensors ⇄ monochrome n-bit frames, with the layout and ranges that travel in the bitstream."""

from fcm.packing.layout import Layout, TensorPlacement
from fcm.packing.packer import RANGE_MODES, PackedFrames, Packer, RangeMode, unpack
from fcm.packing.quantize import QuantRange, dequantize, quantize

__all__ = [
    "RANGE_MODES",
    "Layout",
    "PackedFrames",
    "Packer",
    "QuantRange",
    "RangeMode",
    "TensorPlacement",
    "dequantize",
    "quantize",
    "unpack",
]
