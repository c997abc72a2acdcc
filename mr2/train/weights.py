"""Model weights across runs: copies on the host, a backbone taken from another run, and the WiSE-FT
merge of the initial and the trained weights."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mr2_core.checks import bad, one_line

__all__ = ["cpu_state", "load_backbone", "interpolate_states"]


def cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().cpu().clone() for n, t in model.state_dict().items()}


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
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise ValueError(
            f"init_checkpoint={str(path)!r}: not a readable torch file, truncated or corrupt "
            f"({one_line(exc)}); {fix}"
        ) from None
    state = obj.get("model", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"init_checkpoint={str(path)!r}: holds no model weights; {fix}")
    backbone = {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}
    missing, unexpected = [], []
    try:
        result = model.backbone.load_state_dict(backbone, strict=False)
        missing, unexpected = result.missing_keys, result.unexpected_keys
    except RuntimeError as exc:  # shapes differ: another architecture or width
        raise ValueError(
            f"init_checkpoint={str(path)!r}: weights do not fit this model ({exc}); {fix}"
        ) from None
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
