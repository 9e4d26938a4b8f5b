"""shiftlab kernels: fused anti-aliased downsampling (blur-pool) for PyTorch."""

from kernels.filters import make_taps
from kernels.functional import blur_pool2d, max_blur_pool2d
from kernels.modules import BlurPool2d, MaxBlurPool2d
from kernels.options import FILTER_FAMILIES, PADDING_MODES

__all__ = [
    "FILTER_FAMILIES",
    "PADDING_MODES",
    "BlurPool2d",
    "MaxBlurPool2d",
    "blur_pool2d",
    "make_taps",
    "max_blur_pool2d",
]
