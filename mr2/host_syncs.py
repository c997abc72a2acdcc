"""Count the operations that would make the host wait for a GPU, on any device (a CPU included).

On a GPU, the host queues kernels and runs ahead; it stops and waits (a synchronisation) whenever it
needs a value that only the device has: a scalar read (``.item()``, ``float(t)``, ``bool(t)``,
``.tolist()``), an output whose size depends on the data (``nonzero``, ``unique``, ``masked_select``,
boolean-mask indexing, ``repeat_interleave`` without ``output_size``, ``bincount``), or a copy between
host and device memory (a tensor built from Python data, ``.cpu()``, ``.numpy()``). One such wait per
training step costs the step's whole launch pipeline on a fast GPU.

:func:`count_host_syncs` records those operations while a block runs, through a
``TorchDispatchMode`` (which sees every aten operation) plus a wrapper around ``Tensor.tolist`` and
``Tensor.numpy`` (which read memory without an aten operation on a CPU). It runs on a CPU, so a test
without a GPU can prove that a code path has no synchronisation in steady state; on a GPU,
``torch.cuda.set_sync_debug_mode("error")`` is the direct check and agrees with it.

Copies between devices can only be told apart where there are two devices: on a CPU a tensor built
from Python data (``torch.tensor``, ``aten.lift_fresh``) stands for them, since on a GPU that is a
host-to-device copy from pageable memory, which waits.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["HostSyncCounter", "count_host_syncs", "SYNCING_OPS"]

# aten operations (overload packets) that read device data back to the host, whatever their arguments
SYNCING_OPS = frozenset(
    {
        "_local_scalar_dense",  # .item(), float(t), int(t), bool(t)
        "is_nonzero",
        "equal",
        "nonzero",
        "nonzero_numpy",
        "argwhere",
        "unique",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "unique_dim_consecutive",
        "masked_select",
        "bincount",
        "lift_fresh",  # a tensor from Python data: a host-to-device copy on a GPU
        "lift_fresh_copy",
    }
)
_MASK_INDEXING = frozenset({"index", "index_put", "index_put_", "_index_put_impl", "_index_put_impl_"})


def _packet_name(func: Any) -> str:
    return func.overloadpacket.__name__.removesuffix(".default")


def _has_bool_index(args: tuple[Any, ...]) -> bool:
    indices = args[1] if len(args) > 1 else ()
    masks = (torch.bool, torch.uint8)
    return any(isinstance(i, torch.Tensor) and i.dtype in masks for i in (indices or ()))


def _crosses_devices(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if name == "_to_copy" and args and isinstance(args[0], torch.Tensor):
        device = kwargs.get("device")
        return device is not None and torch.device(device) != args[0].device
    if name == "copy_" and len(args) > 1 and all(isinstance(a, torch.Tensor) for a in args[:2]):
        return args[0].device != args[1].device
    return False


class HostSyncCounter(TorchDispatchMode):
    """Records every operation that would synchronise a GPU (module docstring) in ``self.ops``, a
    ``Counter`` of operation names (``"tolist"`` and ``"numpy"`` for the two Python-level reads).
    Use through :func:`count_host_syncs`."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        kwargs = kwargs or {}
        name = _packet_name(func)
        if name in SYNCING_OPS:
            self.ops[name] += 1
        elif name == "repeat_interleave" and kwargs.get("output_size") is None and len(args) >= 1:
            if isinstance(args[-1] if len(args) > 1 else args[0], torch.Tensor):
                self.ops["repeat_interleave"] += 1  # the output size is the sum of the repeats
        elif name in _MASK_INDEXING and _has_bool_index(args):
            self.ops[f"{name}[bool mask]"] += 1
        elif _crosses_devices(name, args, kwargs):
            self.ops[f"{name}[across devices]"] += 1
        return func(*args, **kwargs)


@contextlib.contextmanager
def count_host_syncs() -> Iterator[HostSyncCounter]:
    """``with count_host_syncs() as c: ...`` then ``c.total`` and ``c.ops`` (operation -> count).

    ``Tensor.tolist`` and ``Tensor.numpy`` are wrapped for the duration of the block (and restored
    after it, also on an error), since on a CPU they read memory without any aten operation.
    """
    counter = HostSyncCounter()
    originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy")}

    def wrap(name: str, method: Any) -> Any:
        def wrapped(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            counter.ops[name] += 1
            return method(self, *args, **kwargs)

        return wrapped

    for name, method in originals.items():
        setattr(torch.Tensor, name, wrap(name, method))
    try:
        with counter:
            yield counter
    finally:
        for name, method in originals.items():
            setattr(torch.Tensor, name, method)
