"""Numeric margin rules: the single source of truth used by ``mr2/`` and ``sims/``.

Notation (``theory.derivation`` derives all of this in SymPy; ``tests/theory`` proves that the
functions here equal the symbolic expressions):

* ``spread[k]`` is a_k = ||mu_k||^2 + s_k^2, the mean squared feature norm of class k;
* ``weights[k]`` is w_k (pi_k = n_k / n in the bound), uniform 1/K by default;
* the margin budget is mean(gamma) = ``mean_margin`` (cbar);
* the objective is J(gamma) = sum_k w_k a_k / gamma_k^p.

Closed form (Lagrangian stationarity, ``theory.derivation.allocation``)::

    gamma_k = K cbar (w_k a_k)^(1/(p+1)) / sum_j (w_j a_j)^(1/(p+1))

Gain of the optimum over uniform margins (``theory.derivation.gain``), with x_k = w_k a_k and the
power mean M_r(x) = (mean_k x_k^r)^(1/r)::

    J(gamma*) / J(cbar) = M_{1/(p+1)}(x) / M_1(x) <= 1

so the bound's margin term J^(1/p) improves by the factor (M_{1/(p+1)}(x) / M_1(x))^(1/p).

Every function accepts NumPy arrays and torch tensors and returns the kind it was given (torch
results keep the input's device and dtype, and are differentiable).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.checks import as_float_array, bad, check_positive

__all__ = [
    "optimal_margins",
    "margin_objective",
    "margin_term",
    "gain_over_uniform",
    "power_mean",
    "ldam_margins",
]

ArrayLike = Any  # np.ndarray | torch.Tensor | sequence of floats


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _check_spread(spread: ArrayLike) -> None:
    as_float_array("spread", _to_numpy(spread), nonnegative=True)


def _to_numpy(x: Any) -> Any:
    if not _is_torch(x):
        return x
    x = x.detach().cpu()
    return (x.float() if x.dtype in _low_precision_dtypes() else x).numpy()  # NumPy has no bfloat16


def _low_precision_dtypes() -> tuple[Any, ...]:
    import torch

    return (torch.float16, torch.bfloat16)


def _as_float32(x: Any) -> Any:
    return x.float() if _is_torch(x) and x.dtype in _low_precision_dtypes() else x


def _as_input_dtype(result: Any, spread: ArrayLike) -> Any:
    """Cast a torch result back to a half-precision ``spread``'s dtype (computed in float32)."""
    if _is_torch(spread) and spread.dtype in _low_precision_dtypes():
        return result.to(spread.dtype)
    return result


def _prepare(spread: ArrayLike, weights: ArrayLike | None, power: float, validate: bool):
    """Return (xp, spread, weights) with weights defaulting to uniform 1/K, in spread's kind."""
    torch_in = _is_torch(spread)
    if validate:
        _check_spread(spread)
        check_positive("power", power)
    if torch_in:
        import torch

        if spread.dtype in _low_precision_dtypes():
            a = spread.float()  # fp16/bf16 in, float32 arithmetic, the input's dtype out (_as_input_dtype)
        else:
            a = spread if spread.is_floating_point() else spread.to(torch.get_default_dtype())
        if a.ndim != 1:  # validate=False still refuses shapes that would broadcast silently
            raise bad("spread", spread, "a 1-D tensor of per-class spreads")
        K = a.shape[0]
        if weights is None:
            w = torch.full_like(a, 1.0 / K)
        else:
            w = torch.as_tensor(weights, dtype=a.dtype, device=a.device)
        xp = torch
    else:
        a = np.asarray(spread, dtype=np.float64)
        K = a.shape[0]
        w = np.full(K, 1.0 / K) if weights is None else weights
        xp = np
    if weights is not None and validate:
        w_np = as_float_array("weights", _to_numpy(weights))
        if w_np.shape != (K,):
            raise bad("weights", weights, f"one weight per class, shape ({K},), got shape {w_np.shape}")
        if np.any(w_np <= 0):
            raise bad("weights", weights, "strictly positive weights")
    if not torch_in:
        w = np.asarray(w, dtype=np.float64)
    return xp, a, w


def optimal_margins(
    spread: ArrayLike,
    *,
    mean_margin: float = 1.0,
    weights: ArrayLike | None = None,
    power: float = 2,
    validate: bool = True,
) -> ArrayLike:
    """Margins minimising sum_k w_k a_k / gamma_k^p subject to mean(gamma) = ``mean_margin``.

    Args:
        spread: shape (K,), a_k = ||mu_k||^2 + s_k^2 >= 0 (squared feature units).
        mean_margin: cbar > 0, the mean margin (logit units); the budget is sum gamma = K cbar.
        weights: shape (K,), w_k > 0 (class priors pi_k in the bound); uniform when None.
        power: p > 0. p = 2 is MR2's bound (exponent 1/3 when balanced); p = 1 gives LDAM.
        validate: check the arguments; pass False only in hot loops whose inputs are known good
            (it avoids a device synchronisation on GPU tensors).

    Returns:
        shape (K,), gamma_k = K cbar (w_k a_k)^(1/(p+1)) / sum_j (w_j a_j)^(1/(p+1)), the same kind
        (ndarray or tensor, device, dtype) as ``spread``; float16/bfloat16 tensors are computed in
        float32 and returned in their own dtype. If every w_k a_k is 0 the objective is flat and the
        margins are uniform (the limit of equal spreads). A class with a_k = 0 gets 0.

    Gradients (torch): finite for every class with a_k > 0, also when another class has a_k = 0.
    The derivative with respect to a zero spread itself is infinite (d a^(1/(p+1)) / da at 0); it is
    returned as 0, so that it cannot turn the other classes' gradients into NaN.

    Raises:
        ValueError: negative, NaN or infinite spreads; an empty array; mean_margin <= 0;
            power <= 0; weights of the wrong length or not positive.
    """
    if validate:
        mean_margin = check_positive("mean_margin", mean_margin)
    xp, a, w = _prepare(spread, weights, power, validate)
    x = w * a
    # Scale by the largest term first: the rule is scale invariant, and this keeps x**(1/(p+1)) far
    # from overflow and underflow whatever the units of the features.
    top = x.max()
    ok = top > 0
    one = xp.ones_like(x)
    x = xp.where(ok, x / xp.where(ok, top, one[0]), one)
    e = 1.0 / (float(power) + 1.0)
    if xp is not np and x.requires_grad:
        # x^e through a double where: the power sees 1 where x = 0, so its infinite derivative at 0
        # never enters the graph (0 * inf would be NaN for every class through the sum and ``top``).
        # Same values as x ** e (0 ** e = 0); only taken when a gradient is wanted (4 ops, not 1).
        pos = x > 0
        t = xp.where(pos, xp.where(pos, x, 1.0) ** e, 0.0)
    else:
        t = x**e
    return _as_input_dtype((x.shape[0] * mean_margin) * t / t.sum(), spread)


def margin_objective(
    spread: ArrayLike, margins: ArrayLike, *, weights: ArrayLike | None = None, power: float = 2
) -> ArrayLike:
    """J(gamma) = sum_k w_k a_k / gamma_k^p (a scalar of the input's kind).

    Args:
        spread: shape (K,), a_k >= 0.
        margins: shape (K,), gamma_k > 0.
        weights: shape (K,), w_k > 0; uniform 1/K when None.
        power: p > 0.
    """
    xp, a, w = _prepare(spread, weights, power, True)
    g_np = as_float_array("margins", _to_numpy(margins))
    if g_np.shape != (a.shape[0],):
        raise bad("margins", margins, f"one margin per class, shape ({a.shape[0]},), got {g_np.shape}")
    if np.any(g_np <= 0):
        raise bad("margins", margins, "strictly positive margins")
    g = xp.as_tensor(margins, dtype=a.dtype, device=a.device) if xp is not np else g_np
    return _as_input_dtype((w * a / g**power).sum(), spread)


def margin_term(
    spread: ArrayLike, margins: ArrayLike, *, weights: ArrayLike | None = None, power: float = 2
) -> ArrayLike:
    """The bound's margin term J(gamma)^(1/p); at p = 2 it is sqrt(sum_k pi_k a_k / gamma_k^2).

    This is the factor that multiplies sqrt(2) B sqrt(K / n) in the Rademacher bound
    (``theory.derivation.bound``). Arguments as in :func:`margin_objective`.
    """
    # computed in float32 for half-precision input, then cast back (margin_objective's result is not)
    value = margin_objective(_as_float32(spread), margins, weights=weights, power=power) ** (1.0 / power)
    return _as_input_dtype(value, spread)


def power_mean(x: ArrayLike, r: float) -> ArrayLike:
    """M_r(x) = (mean x^r)^(1/r) for r != 0, the geometric mean for r = 0; x >= 0, shape (K,)."""
    torch_in = _is_torch(x)
    xp = __import__("torch") if torch_in else np
    x = x if torch_in else np.asarray(x, dtype=np.float64)
    if r == 0:
        return xp.exp(xp.log(x).mean())
    return (x**r).mean() ** (1.0 / r)


def gain_over_uniform(spread: ArrayLike, *, weights: ArrayLike | None = None, power: float = 2) -> ArrayLike:
    """Margin term at the optimum over the margin term at uniform margins (same budget); <= 1.

    Closed form: (M_{1/(p+1)}(x) / M_1(x))^(1/p) with x_k = w_k a_k, independent of cbar. It equals 1
    exactly when all x_k are equal, and falls towards 0 as one class dominates the spread.
    """
    xp, a, w = _prepare(spread, weights, power, True)
    x = w * a
    if float(x.max()) == 0.0:
        one = xp.ones((), dtype=x.dtype) if xp is np else xp.ones((), dtype=x.dtype, device=x.device)
        return _as_input_dtype(one, spread)
    x = x / x.max()
    ratio = power_mean(x, 1.0 / (power + 1.0)) / power_mean(x, 1.0)
    return _as_input_dtype(ratio ** (1.0 / power), spread)


def ldam_margins(class_counts: ArrayLike, *, max_margin: float = 0.5) -> ArrayLike:
    """LDAM's margins m_k proportional to n_k^(-1/4), scaled so that max_k m_k = ``max_margin``.

    Obtained from :func:`optimal_margins` with p = 1 and a_k = n_k^(-1/2) (Cao et al., 2019), which
    is how ``theory.derivation.special_cases`` recovers LDAM; only the budget differs (LDAM fixes the
    largest margin instead of the mean).

    Args:
        class_counts: shape (K,), n_k > 0 training examples per class.
        max_margin: the largest margin (LDAM's ``max_m``), > 0.
    """
    max_margin = check_positive("max_margin", max_margin)
    n = as_float_array("class_counts", _to_numpy(class_counts))
    if np.any(n <= 0):
        raise bad("class_counts", class_counts, "positive counts (every class needs an example)")
    if _is_torch(class_counts):
        a = class_counts.to(__import__("torch").get_default_dtype()) ** -0.5
    else:
        a = n**-0.5
    m = optimal_margins(a, power=1)
    return m * (max_margin / m.max())
