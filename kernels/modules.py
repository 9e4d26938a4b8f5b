"""Drop-in ``nn.Module`` forms of the blur-pool ops.

The filter taps are built once, at construction, and kept as a float64 buffer (so they are in
the ``state_dict`` and move with ``.to()``); nothing is rebuilt from ``x.size(1)`` at run time,
which is what breaks TorchScript and ONNX export of filters built per call. Scripted, traced
and exported graphs run the plain-PyTorch reference; eager calls go through the backend
dispatch of ``kernels.functional``. The fused kernels take the taps as Python floats, read from
the buffer again only when it is another tensor: assigned (``module.taps = t``, read at once),
substituted (as ``torch.func.functional_call`` does) or loaded (reading a CUDA buffer on each
call would wait for the device). An in-place edit of the buffer is not read again, since DDP's
broadcast of buffers writes them in place at every step; the reference ops take the buffer
itself and do see it, so the backends would disagree: assign new taps instead. Taps assigned,
substituted or loaded are checked when read (1-D, finite, summing to 1), on either backend;
invalid ones fail the next call by name. Compiled code and `nn.DataParallel`'s replicas take
the floats read last (``tap_values``), so they run assigned taps too. A dtype cast of the
module (``.half()``) leaves the buffer in float64, so the taps keep summing to 1 (spec §1).
"""

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from kernels.filters import make_taps
from kernels.functional import check_blur_args, run_blur_pool2d, run_max_blur_pool2d, tap_values
from kernels.options import check_int
from kernels.reference import blur_pool2d_reference, max_blur_pool2d_reference
from kernels.tracing import (
    batched,
    building_graph,
    general_sizes_while_exporting,
    traced,
    transforms_active,
)

#: How far from 1 the sum of loaded taps may be, and from the module's own taps for the filter
#: to keep its name (taps a checkpoint kept in float32 are off by up to a few 1e-8).
TAPS_SUM_TOLERANCE = 1e-6


class _LowPassPool(nn.Module):
    """What both modules share: the filter kept as a buffer, the settings checked once, the
    scripted/exported path through the reference and the eager path through the dispatch."""

    taps: torch.Tensor
    __jit_unused_properties__ = ["tap_values"]  # noqa: RUF012 (TorchScript reads the list)

    def __init__(
        self,
        channels: int,
        filter_size: int | None,
        stride: int,
        padding: str,
        filter: str,
        taps: Sequence[float] | torch.Tensor | None,
        sigma: float | None,
        backend: str,
        **options: int | bool,
    ) -> None:
        super().__init__()
        check_int("channels", channels, 1)
        taps = make_taps(filter_size, filter, taps=taps, sigma=sigma, argument="filter")
        values = tap_values(taps)
        # On the default device, as the module's parameters are (DDP broadcasts buffers), but
        # not the meta device: the taps are no checkpoint's to fill after `to_empty()`.
        default = torch.get_default_device()
        self.register_buffer("taps", taps if default.type == "meta" else taps.to(default))
        self._keep_tap_values(values)
        check_blur_args(stride=stride, padding=padding, backend=backend, **options)
        self.channels = channels
        self.filter = filter
        self.sigma = sigma
        self.stride = stride
        self.padding = padding
        self.backend = backend

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        """Load the taps, which must sum to 1 (spec §1); taps other than the ones this module
        was built with make its filter `custom`, as its repr then says. Loaded with `assign`,
        the taps stay float64 (a float32 checkpoint's are copied) and refused ones leave the
        caller's tensor as it was. A state dict without them (that of the network before it
        was anti-aliased) leaves the module's own, and strict loading does not miss them."""
        kept = self.taps
        before = kept.clone()
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if prefix + "taps" not in state_dict:
            if prefix + "taps" in missing_keys:
                missing_keys.remove(prefix + "taps")
            return
        if self.taps.dtype != torch.float64:  # assigned from a checkpoint of another dtype
            self.taps = self.taps.to(torch.float64)
        values = tap_values(self.taps)
        problem = _sum_problem(prefix + "taps", values)
        if problem is not None:
            error_msgs.append(problem)
            if self.taps is kept:  # loaded into the buffer: put its values back
                kept.copy_(before)
            self.taps = kept  # assigned: the module's own buffer back, the caller's untouched
            return
        if not torch.allclose(self.taps, before, rtol=0, atol=TAPS_SUM_TOLERANCE):
            self.filter, self.sigma = "custom", None
        self._keep_tap_values(values)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> Any:
        """The taps follow the module's device only: `.half()` leaves them float64, and
        `to_empty()` keeps their values (after building on the meta device, or moving there:
        the floats read before are the taps)."""
        exact, read = self.taps, self._current_read()
        super()._apply(fn, recurse)
        if self.taps is not exact:
            device = self.taps.device
            if exact.is_meta and read is not None:
                moved = torch.tensor(read, dtype=torch.float64, device=device)
            else:
                moved = exact.to(device)
            if read is not None:  # the same values: a move does not cost a read from the device
                self._read_taps = (moved, read)
            self.taps = moved
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        """Taps assigned in eager code are read (and checked) at once: compiled code and
        `nn.DataParallel`'s replicas take the floats read last, so they see the new taps too.
        Invalid ones are left to the next call, which refuses them by name."""
        super().__setattr__(name, value)
        fresh = name == "taps" and "_read_taps" in self.__dict__ and self._current_read() is None
        if fresh and _readable_now(value):
            with contextlib.suppress(ValueError):
                self._keep_tap_values(_checked_tap_values(value))

    @property
    def tap_values(self) -> tuple[float, ...]:
        """The taps as the Python floats the fused kernels take."""
        return self._fused_tap_values()

    def _keep_tap_values(self, values: tuple[float, ...]) -> None:
        """Keep ``values``, the floats of the buffer as it is now."""
        self._read_taps = (self.taps, values)

    @torch.jit.unused
    def _fused_tap_values(self) -> tuple[float, ...]:
        """The taps as floats, read again where the buffer is not the tensor they were read
        from. Compiled code keeps those it was traced with; a replica of `nn.DataParallel`
        (made anew at each call, with copies of the buffers) those of the module it copies."""
        read = self._current_read()
        if read is not None:
            return read
        kept = getattr(self, "_read_taps", None)
        replica = getattr(self, "_is_replica", False)
        if kept is not None and (replica or torch.compiler.is_compiling()):
            return kept[1]
        self._keep_tap_values(_checked_tap_values(self.taps))
        return self._read_taps[1]

    def _current_read(self) -> tuple[float, ...] | None:
        """The floats last read, if read from the buffer the module has now (a module saved
        whole by an earlier version has none)."""
        source, values = getattr(self, "_read_taps", (None, ()))
        return values if source is self.taps else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input_channels(x, self.channels)
        if torch.jit.is_scripting():
            return self._reference(x)
        if building_graph():
            with general_sizes_while_exporting():
                return self._reference(x)
        self._check_new_taps()
        return self._dispatch(x)

    @torch.jit.unused
    def _check_new_taps(self) -> None:
        """Read (and so check) taps given since the last read, for either backend: a wrong
        shape or taps that do not sum to 1 fail here, by name, not inside a backend. Not
        under ``torch.func`` transforms, whose taps may be batched and cannot be read."""
        if self._current_read() is None and not transforms_active():
            self._fused_tap_values()

    def extra_repr(self) -> str:
        return (
            f"{self.channels}, {_describe_filter(self.filter, self.taps, self.sigma)}, "
            f"stride={self.stride}, padding={self.padding!r}, {self._options_repr()}, "
            f"backend={self.backend!r}"
        )


class BlurPool2d(_LowPassPool):
    """Low-pass filter then subsample each of ``channels`` channels (spec §2).

    With ``relu=True`` a ReLU runs first, fused in the Triton kernel: the paper's
    ``Conv(stride 1) -> BN -> ReLU -> blur-pool`` with the ReLU folded in.
    """

    def __init__(
        self,
        channels: int,
        filter_size: int | None = 4,
        stride: int = 2,
        padding: str = "reflect",
        *,
        filter: str = "binomial",
        taps: Sequence[float] | torch.Tensor | None = None,
        sigma: float | None = None,
        pad_off: int = 0,
        relu: bool = False,
        backend: str = "auto",
    ) -> None:
        super().__init__(channels, filter_size, stride, padding, filter, taps, sigma, backend,
                         pad_off=pad_off, relu=relu)  # fmt: skip
        self.pad_off = pad_off
        self.relu = relu

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        return blur_pool2d_reference(x, self.taps, self.stride, self.padding, self.pad_off,
                                     self.relu)  # fmt: skip

    @torch.jit.unused
    def _dispatch(self, x: torch.Tensor) -> torch.Tensor:
        return run_blur_pool2d(x, self.taps, self._fused_tap_values, self.stride, self.padding,
                               self.pad_off, self.relu, self.backend)  # fmt: skip

    def _options_repr(self) -> str:
        return f"pad_off={self.pad_off}, relu={self.relu}"


class MaxBlurPool2d(_LowPassPool):
    """Dense ``max_kernel`` max-pool at stride 1, then blur-pool (spec §3): the paper's
    replacement for ``MaxPool2d(2, stride)``."""

    def __init__(
        self,
        channels: int,
        filter_size: int | None = 4,
        stride: int = 2,
        padding: str = "reflect",
        *,
        max_kernel: int = 2,
        filter: str = "binomial",
        taps: Sequence[float] | torch.Tensor | None = None,
        sigma: float | None = None,
        backend: str = "auto",
    ) -> None:
        super().__init__(channels, filter_size, stride, padding, filter, taps, sigma, backend,
                         max_kernel=max_kernel)  # fmt: skip
        self.max_kernel = max_kernel

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        return max_blur_pool2d_reference(x, self.taps, self.stride, self.padding, self.max_kernel)

    @torch.jit.unused
    def _dispatch(self, x: torch.Tensor) -> torch.Tensor:
        return run_max_blur_pool2d(x, self.taps, self._fused_tap_values, self.stride, self.padding,
                                   self.max_kernel, self.backend)  # fmt: skip

    def _options_repr(self) -> str:
        return f"max_kernel={self.max_kernel}"


def _check_input_channels(x: torch.Tensor, channels: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"input must be a torch.Tensor of shape (N, {channels}, H, W), got "
                         f"{type(x).__name__}")  # fmt: skip
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(
            f"input of shape {x.shape} is invalid: expected (N, {channels}, H, W), "
            "the channel count this module was built for"
        )


def _readable_now(taps: object) -> bool:
    """Whether `taps` has values to read here: a real tensor outside a trace, a transform or
    vmap (`torch.func.functional_call` substitutes batched or fake ones)."""
    return (
        isinstance(taps, torch.Tensor)
        and not taps.is_meta
        and not traced()
        and not transforms_active()
        and not batched(taps)
    )


def _checked_tap_values(taps: torch.Tensor) -> tuple[float, ...]:
    """The floats of taps a module was given after it was built (assigned, or substituted by
    ``torch.func.functional_call``): a non-empty 1-D floating tensor whose finite values sum
    to 1 (spec §1), as the state dict's are checked; else a ValueError naming them."""
    if taps.dim() != 1 or taps.numel() == 0 or not taps.is_floating_point():
        raise ValueError(
            f"taps of shape {tuple(taps.shape)} and dtype {taps.dtype} are invalid: expected "
            "a non-empty 1-D floating tensor (kernels.filters.make_taps makes one)"
        )
    values = tap_values(taps)
    problem = _sum_problem("taps", values)
    if problem is not None:
        raise ValueError(problem)
    return values


def _sum_problem(name: str, values: tuple[float, ...]) -> str | None:
    """What is wrong with taps ``values`` called ``name``, or None where they are finite and
    sum to 1 within TAPS_SUM_TOLERANCE."""
    total = math.fsum(values) if all(math.isfinite(v) for v in values) else math.nan
    if math.isfinite(total) and abs(total - 1) <= TAPS_SUM_TOLERANCE:
        return None
    return (
        f"{name} sum to {total!r}: the taps of a low-pass pool are finite and "
        "normalised to sum 1 (kernels.filters.make_taps)"
    )


def _describe_filter(family: str, taps: torch.Tensor, sigma: float | None) -> str:
    if family == "custom":
        return "taps=[" + ", ".join(f"{t:.4g}" for t in taps.tolist()) + "]"
    described = f"filter_size={taps.numel()}, filter={family!r}"
    return described if sigma is None else f"{described}, sigma={sigma}"
