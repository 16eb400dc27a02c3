"""Device choice and mixed precision: CUDA (bf16 autocast) > MPS > CPU."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Literal

from radbench.errors import RadbenchError

if TYPE_CHECKING:
    import torch

Precision = Literal["auto", "bf16", "fp32"]


def resolve_device(name: str = "auto") -> torch.device:
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RadbenchError("device 'cuda' requested but CUDA is not available")
    return device


def effective_precision(device: torch.device, precision: Precision) -> str:
    """bf16 autocast on CUDA unless fp32 is asked for; CPU and MPS run fp32."""
    if precision == "fp32" or device.type != "cuda":
        return "fp32"
    return "bf16"


# multiply-adds per step below which one maths-library thread beats several: the threads' hand-offs cost more than
# the work, and on a loaded machine they spin against each other (benchmarks/probe_threads.py)
SMALL_WORK = 1 << 22


@contextlib.contextmanager
def maths_threads(count: int | None):
    """BLAS / OpenMP (threadpoolctl) and torch intra-op threads limited to `count` while inside (None: unchanged)."""
    if count is None:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        with threadpool_limits(limits=count):
            yield
    finally:
        torch.set_num_threads(previous)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    import torch

    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
