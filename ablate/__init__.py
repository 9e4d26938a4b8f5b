"""shiftlab's ablation engine: train short runs across a blur-pool design space and measure them."""
