"""Model weights across runs: copies on the host, a backbone taken from another run, and the WiSE-FT
merge of the initial and the trained weights."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from mr2_core.checks import bad, one_line

__all__ = ["cpu_state", "load_backbone", "load_plain", "interpolate_states"]


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().cpu().clone() for n, t in model.state_dict().items()}


def load_plain(
    path: Path, name: str, what: str, fix: str, map_location: Any = "cpu", unreadable: str | None = None
) -> Any:
    """The plain data (tensors, dicts, lists, numbers, strings) of a torch file, read with
    ``weights_only=True``: a file that holds any other Python object is refused, never unpickled,
    since unpickling runs whatever code the file names (a run folder may come from someone else).

    Args:
        path: the file.
        name: how the message names it (``init_checkpoint='x.pt'``, or the path).
        what: what the file should be (``checkpoint``), for the message.
        fix: what the user can do, appended to the message.
        unreadable: the message's words for a file torch cannot read (default: corrupt or truncated).
    """
    unreadable = unreadable or f"corrupt or truncated {what}"
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found is None:  # pickle garbage (torch's message here advises weights_only=False: not shown)
            raise ValueError(f"{name}: {unreadable} (UnpicklingError: not a torch file); {fix}") from None
        raise ValueError(
            f"{name}: refused: the {what} holds a Python object ({found.group(1)}), not only tensors, "
            f"numbers, strings, lists and dicts, and loading it could run code; only plain data is read. "
            f"Use a {what} made by this version of mr2 from a source you trust; {fix}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - truncated zip, a text file, a folder: all unreadable
        raise ValueError(f"{name}: {unreadable} ({one_line(exc)}); {fix}") from None


def load_backbone(model: torch.nn.Module, path: str | os.PathLike, *, head: bool = False) -> None:
    """Load a backbone's weights from a run's ``model.pt`` (a state_dict) or ``checkpoint.pt`` (its
    model), e.g. a backbone pretrained by another run; the head keeps its fresh initialisation unless
    ``head`` (then the head's weights are loaded too: same classes and head type)."""
    fix = "pass the model.pt (save_model=true) or checkpoint.pt of a finished run of the same model"
    if str(path).startswith("@"):
        raise bad(
            "init_checkpoint", str(path), f"a file: '@preset/method/seedK' is resolved by run_study; {fix}"
        )
    path = Path(path)
    if not path.is_file():
        raise bad("init_checkpoint", str(path), f"an existing file; {fix}")
    obj = load_plain(
        path, f"init_checkpoint={str(path)!r}", "torch file", fix,
        unreadable="not a readable torch file, truncated or corrupt",
    )  # fmt: skip
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"init_checkpoint={str(path)!r}: holds no model weights; {fix}")
    backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    own = model.backbone.state_dict()
    shapes = [k for k in backbone if k in own and backbone[k].shape != own[k].shape]
    if shapes:  # another width or architecture: name one tensor, not torch's list of every one
        k = shapes[0]
        raise ValueError(
            f"init_checkpoint={str(path)!r}: weights do not fit this model ({len(shapes)} tensor(s) of "
            f"another shape, e.g. {k}: {tuple(backbone[k].shape)} in the file, {tuple(own[k].shape)} here: "
            f"another width or architecture); {fix}"
        )
    result = model.backbone.load_state_dict(backbone, strict=False)
    missing, unexpected = result.missing_keys, result.unexpected_keys
    if missing or unexpected:
        raise ValueError(
            f"init_checkpoint={str(path)!r}: backbone keys differ (missing {missing[:4]}, unexpected "
            f"{unexpected[:4]}); {fix}"
        )
    if head:
        weights = {k.removeprefix("head."): v for k, v in state.items() if k.startswith("head.")}
        try:
            model.head.load_state_dict(weights, strict=True)
        except RuntimeError as exc:  # another K, head type or width
            raise ValueError(
                f"init_checkpoint={str(path)!r}: its head does not fit this model ({one_line(exc)}); "
                "init_head=true needs the same classes and head type"
            ) from None


def interpolate_states(
    initial: dict[str, torch.Tensor], trained: dict[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """The WiSE-FT merge (Wortsman et al. 2022) (1 - alpha) w_init + alpha w_trained of every floating
    tensor of a state dict; integer buffers (batch-norm counters) are the trained model's."""
    merged = {}
    for name, w in trained.items():
        w0 = initial[name].to(w.device)
        merged[name] = torch.lerp(w0, w, alpha) if w.is_floating_point() else w
    return merged
