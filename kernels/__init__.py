"""shiftlab kernels: fused anti-aliased downsampling (blur-pool) for PyTorch."""
