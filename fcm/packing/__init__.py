"""Packing: feature tensors ⇄ monochrome n-bit frames, with the layout and ranges that travel in the bitstream."""

from fcm.packing.layout import Layout, TensorPlacement
from fcm.packing.packer import RANGE_MODES, PackedFrames, Packer, RangeMode, unpack
from fcm.packing.quantize import QuantRange, dequantize, quantize

__all__ = [
    "Layout",
    "PackedFrames",
    "Packer",
    "QuantRange",
    "RANGE_MODES",
    "RangeMode",
    "TensorPlacement",
    "dequantize",
    "quantize",
    "unpack",
]
