"""Numeric margin rules: the single source of truth used by ``mr2/`` and ``sims/``.

Notation (``theory.derivation`` and ``theory.limits`` derive all of this in SymPy; ``tests/theory``
proves that the functions here equal the symbolic expressions):

* ``spread[k]`` is a_k = ||mu_k||^2 + s_k^2, the mean squared feature norm of class k;
* ``weights[k]`` is w_k (pi_k = n_k / n in the bound), uniform 1/K by default;
* ``class_counts[k]`` is n_k, the training examples of class k;
* the margin budget is mean(gamma) = ``mean_margin`` (cbar), or geometric-mean(gamma) = cbar;
* the objective is J(gamma) = sum_k w_k a_k / gamma_k^p.

Closed forms (Lagrangian stationarity and KKT, ``theory.derivation.allocation``, ``theory.limits``)::

    sum budget        gamma_k = K cbar (w_k a_k)^(1/(p+1)) / sum_j (w_j a_j)^(1/(p+1))
    geometric budget  gamma_k = cbar (w_k a_k)^(1/p) / G(w a)^(1/p)        (G: geometric mean)
    worst class       gamma_k = K cbar (a_k/n_k)^(1/p) / sum_j (a_j/n_j)^(1/p)
    per-class bounds  gamma_k = K cbar (a_k/n_k)^(1/4) / sum_j (a_j/n_j)^(1/4)   (LDAM's family)

Gain of the optimum over uniform margins (``theory.derivation.gain``), with x_k = w_k a_k and the
power mean M_r(x) = (mean_k x_k^r)^(1/r)::

    J(gamma*) / J(cbar) = M_{1/(p+1)}(x) / M_1(x) <= 1

so the bound's margin term J^(1/p) improves by the factor (M_{1/(p+1)}(x) / M_1(x))^(1/p).

The bound's complexity terms with their derived constant (``theory.derivation.bound``,
``theory.limits.worst_class``): :func:`bound_term` (the joint bound, 4 B sqrt(K/n) J^(1/2)) and
:func:`class_bound_term` (class k's own bound, 4 B sqrt(K/n_k) sqrt(a_k) / gamma_k).

Every function accepts NumPy arrays and torch tensors and returns the kind it was given (torch
results keep the input's device and dtype, and are differentiable).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mr2_core.checks import as_float_array, bad, check_in, check_positive

__all__ = [
    "BUDGETS",
    "optimal_margins",
    "minimax_margins",
    "per_class_margins",
    "bound_term",
    "class_bound_term",
    "centred_spread",
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


BUDGETS = ("sum", "geometric")


def _allocate(xp: Any, x: Any, exponent: float, mean_margin: float, budget: str) -> Any:
    """gamma proportional to x^exponent, scaled to the budget; x >= 0 of shape (K,).

    ``budget="sum"``: mean(gamma) = mean_margin; all-zero x gives uniform margins, a zero x_k gives 0.
    ``budget="geometric"``: geometric-mean(gamma) = mean_margin; x must be > 0 (checked by callers).
    """
    # Scale by the largest term first: the rule is scale invariant, and this keeps x**exponent far
    # from overflow and underflow whatever the units of the features.
    top = x.max()
    ok = top > 0
    one = xp.ones_like(x)
    x = xp.where(ok, x / xp.where(ok, top, one[0]), one)
    if xp is not np and x.requires_grad:
        # x^e through a double where: the power sees 1 where x = 0, so its infinite derivative at 0
        # never enters the graph (0 * inf would be NaN for every class through the sum and ``top``).
        # Same values as x ** e (0 ** e = 0); only taken when a gradient is wanted (4 ops, not 1).
        pos = x > 0
        t = xp.where(pos, xp.where(pos, x, 1.0) ** exponent, 0.0)
    else:
        t = x**exponent
    if budget == "geometric":
        return mean_margin * t / xp.exp(xp.log(t).mean())
    return (x.shape[0] * mean_margin) * t / t.sum()


def _check_budget(budget: str, spread: ArrayLike, x: np.ndarray) -> None:
    if budget == "geometric" and float(x.min()) <= 0:
        raise bad(
            "spread",
            spread,
            "strictly positive w_k a_k under budget='geometric' (a zero margin makes the product 0)",
        )


def optimal_margins(
    spread: ArrayLike,
    *,
    mean_margin: float = 1.0,
    weights: ArrayLike | None = None,
    power: float = 2,
    budget: str = "sum",
    validate: bool = True,
) -> ArrayLike:
    """Margins minimising J(gamma) = sum_k w_k a_k / gamma_k^p under a margin budget.

    Args:
        spread: shape (K,), a_k = ||mu_k||^2 + s_k^2 >= 0 (squared feature units).
        mean_margin: cbar > 0 (logit units). ``budget="sum"``: the arithmetic mean of the margins,
            sum gamma = K cbar (Theorem 2, MR2's budget). ``budget="geometric"``: their geometric
            mean, prod gamma = cbar^K (``theory.limits.budget``).
        weights: shape (K,), w_k > 0 (class priors pi_k in the bound); uniform when None.
        power: p > 0. p = 2 is MR2's bound (exponent 1/3 when balanced); p = 1 gives LDAM.
        budget: ``"sum"`` or ``"geometric"``; the budget fixes the exponent (1/(p+1) or 1/p).
        validate: check the arguments; pass False only in hot loops whose inputs are known good
            (it avoids a device synchronisation on GPU tensors).

    Returns:
        shape (K,), the same kind (ndarray or tensor, device, dtype) as ``spread``:

        * sum budget: gamma_k = K cbar (w_k a_k)^(1/(p+1)) / sum_j (w_j a_j)^(1/(p+1)). If every
            w_k a_k is 0 the objective is flat and the margins are uniform (the limit of equal
            spreads); a class with a_k = 0 gets 0.
        * geometric budget: gamma_k = cbar (w_k a_k / G)^(1/p), G the geometric mean of w a; every
            per-class term w_k a_k / gamma_k^p then equals G / cbar^p.

        float16/bfloat16 tensors are computed in float32 and returned in their own dtype.

    Gradients (torch): finite for every class with a_k > 0, also when another class has a_k = 0.
    The derivative with respect to a zero spread itself is infinite (d a^(1/(p+1)) / da at 0); it is
    returned as 0, so that it cannot turn the other classes' gradients into NaN.

    Raises:
        ValueError: negative, NaN or infinite spreads; an empty array; mean_margin <= 0;
            power <= 0; weights of the wrong length or not positive; an unknown budget; a zero
            spread under the geometric budget.
    """
    if validate:
        mean_margin = check_positive("mean_margin", mean_margin)
    check_in("budget", budget, BUDGETS)  # always: an unknown budget must not pass as "geometric"
    xp, a, w = _prepare(spread, weights, power, validate)
    x = w * a
    if validate:
        _check_budget(budget, spread, _to_numpy(x))
    exponent = 1.0 / (float(power) + 1.0) if budget == "sum" else 1.0 / float(power)
    return _as_input_dtype(_allocate(xp, x, exponent, mean_margin, budget), spread)


def _class_ratio(spread: ArrayLike, class_counts: ArrayLike | None, validate: bool):
    """(xp, a_k / n_k) in spread's kind; n_k = 1 when ``class_counts`` is None."""
    xp, a, _ = _prepare(spread, None, 1.0, validate)
    if class_counts is None:
        return xp, a
    n = _counts(class_counts, a.shape[0]) if validate else class_counts
    if xp is np:
        return xp, a / np.asarray(n, dtype=np.float64)
    return xp, a / xp.as_tensor(n, dtype=a.dtype, device=a.device)


def _counts(class_counts: ArrayLike, K: int) -> np.ndarray:
    n = as_float_array("class_counts", _to_numpy(class_counts))
    if n.shape != (K,):
        raise bad("class_counts", class_counts, f"one count per class, shape ({K},), got shape {n.shape}")
    if np.any(n <= 0):
        raise bad("class_counts", class_counts, "positive counts (every class needs an example)")
    return n


def minimax_margins(
    spread: ArrayLike,
    class_counts: ArrayLike | None = None,
    *,
    mean_margin: float = 1.0,
    power: float = 2,
    validate: bool = True,
) -> ArrayLike:
    """Margins minimising the worst class's term max_k (a_k / n_k) / gamma_k^p, mean(gamma) = cbar.

    The worst-class statement (``theory.limits.worst_class``) bounds each class's risk with its own
    term 4 B sqrt(K / n_k) sqrt(a_k) / gamma_k; minimising the largest of these (``power=2`` on its
    square) is the minimax problem solved by KKT in ``theory.limits.budget``. At the optimum every
    class's term is equal, so gamma_k = K cbar (a_k/n_k)^(1/p) / sum_j (a_j/n_j)^(1/p): exponent 1/2
    for the bound, against MR2's 1/3.

    Args:
        spread: shape (K,), a_k >= 0 (squared feature units).
        class_counts: shape (K,), n_k > 0; None treats every class as having the same count.
        mean_margin: cbar > 0, the mean margin (logit units).
        power: p > 0 in the per-class term (a_k / n_k) / gamma_k^p.
        validate: as in :func:`optimal_margins`.

    Returns:
        shape (K,), the kind of ``spread``; a class with a_k = 0 gets 0, all zero gives uniform.
    """
    if validate:
        mean_margin = check_positive("mean_margin", mean_margin)
        check_positive("power", power)
    xp, x = _class_ratio(spread, class_counts, validate)
    return _as_input_dtype(_allocate(xp, x, 1.0 / float(power), mean_margin, "sum"), spread)


def per_class_margins(
    spread: ArrayLike,
    class_counts: ArrayLike | None = None,
    *,
    mean_margin: float = 1.0,
    validate: bool = True,
) -> ArrayLike:
    """Margins minimising the average of the per-class bounds: sum_k sqrt(a_k / n_k) / gamma_k.

    Averaging class k's own bound (term 4 B sqrt(K/n_k) sqrt(a_k) / gamma_k) over the classes bounds
    the balanced error; minimising it under sum gamma = K cbar is the allocation with p = 1 and
    x_k = sqrt(a_k / n_k) (``theory.limits.per_class``), so gamma_k is proportional to
    (a_k / n_k)^(1/4). With equal a_k this is LDAM's n_k^(-1/4) (Cao et al., 2019); on balanced
    data it is a_k^(1/4), not MR2's a_k^(1/3).

    Args:
        spread: shape (K,), a_k >= 0.
        class_counts: shape (K,), n_k > 0; None treats every class as having the same count.
        mean_margin: cbar > 0, the mean margin.
        validate: as in :func:`optimal_margins`.

    Returns:
        shape (K,), the kind of ``spread``.
    """
    if validate:
        mean_margin = check_positive("mean_margin", mean_margin)
    xp, x = _class_ratio(spread, class_counts, validate)
    return _as_input_dtype(_allocate(xp, x, 0.25, mean_margin, "sum"), spread)


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
    g = _margins_like(xp, a, margins)
    return _as_input_dtype((w * a / g**power).sum(), spread)


def margin_term(
    spread: ArrayLike, margins: ArrayLike, *, weights: ArrayLike | None = None, power: float = 2
) -> ArrayLike:
    """The bound's margin term J(gamma)^(1/p); at p = 2 it is sqrt(sum_k pi_k a_k / gamma_k^2).

    This is the factor that multiplies 4 B sqrt(K / n) in Theorem 1 (``theory.derivation.bound``);
    :func:`bound_term` includes that constant. Arguments as in :func:`margin_objective`.
    """
    # computed in float32 for half-precision input, then cast back (margin_objective's result is not)
    value = margin_objective(_as_float32(spread), margins, weights=weights, power=power) ** (1.0 / power)
    return _as_input_dtype(value, spread)


# 4 = 2 (Rademacher bound) x sqrt(2) (Maurer) x sqrt(2) (the multi-class margin's Lipschitz constant);
# tests/theory compares bound_term and class_bound_term with the SymPy expressions that carry it.
BOUND_CONSTANT = 4.0


def _margins_like(xp: Any, a: Any, margins: ArrayLike) -> Any:
    g_np = as_float_array("margins", _to_numpy(margins))
    if g_np.shape != (a.shape[0],):
        raise bad("margins", margins, f"one margin per class, shape ({a.shape[0]},), got {g_np.shape}")
    if np.any(g_np <= 0):
        raise bad("margins", margins, "strictly positive margins")
    return xp.as_tensor(margins, dtype=a.dtype, device=a.device) if xp is not np else g_np


def bound_term(
    spread: ArrayLike,
    margins: ArrayLike,
    class_counts: ArrayLike,
    *,
    weight_norm: float = 1.0,
    loss_weights: ArrayLike | None = None,
) -> ArrayLike:
    """Theorem 1's complexity term 4 B sqrt(K / n) sqrt(sum_k pihat_k c_k^2 a_k / gamma_k^2).

    The term that the joint bound adds to the weighted empirical ramp risk (``theory.derivation.bound``,
    before the confidence term 3 max_k c_k sqrt(log(2/delta) / (2n))).

    Args:
        spread: shape (K,), a_k = ||mu_k||^2 + s_k^2 >= 0 of the features the head sees (append the
            constant 1 when the head has a bias: a_k + 1).
        margins: shape (K,), gamma_k > 0 (logit units).
        class_counts: shape (K,), n_k > 0; n = sum n_k and pihat_k = n_k / n.
        weight_norm: B > 0, the bound on ||W||_F (||[W, b]||_F with a bias).
        loss_weights: shape (K,), c_k > 0; None gives c = 1 (the risk). c_k = 1/(K pi_k) gives the
            balanced error.

    Returns:
        a scalar of the kind of ``spread`` (a 0-d tensor for torch input).
    """
    B = check_positive("weight_norm", weight_norm)
    xp, a, _ = _prepare(spread, None, 2.0, True)
    n = _counts(class_counts, a.shape[0])
    w = n / n.sum()
    if loss_weights is not None:
        c = as_float_array("loss_weights", _to_numpy(loss_weights))
        if c.shape != w.shape or np.any(c <= 0):
            raise bad("loss_weights", loss_weights, f"{w.size} strictly positive loss weights")
        w = w * c**2
    term = margin_term(spread, margins, weights=w)
    return BOUND_CONSTANT * B * float(np.sqrt(a.shape[0] / n.sum())) * term


def class_bound_term(
    spread: ArrayLike, margins: ArrayLike, class_counts: ArrayLike, *, weight_norm: float = 1.0
) -> ArrayLike:
    """Class k's own complexity term 4 B sqrt(K / n_k) sqrt(a_k) / gamma_k, for every k.

    Bounding class k's risk from its n_k examples alone (``theory.limits.worst_class``) gives this
    term; with a union bound over the K classes the confidence term is
    3 sqrt(log(2K/delta) / (2 n_k)). The joint term of :func:`bound_term` (c = 1) equals
    sqrt(sum_k pihat_k^2 T_k^2) for these T_k.

    Args:
        spread: shape (K,), a_k >= 0 (as in :func:`bound_term`).
        margins: shape (K,), gamma_k > 0.
        class_counts: shape (K,), n_k > 0.
        weight_norm: B > 0.

    Returns:
        shape (K,), the kind of ``spread``.
    """
    B = check_positive("weight_norm", weight_norm)
    xp, a, _ = _prepare(spread, None, 2.0, True)
    n = _counts(class_counts, a.shape[0])
    g = _margins_like(xp, a, margins)
    scale = BOUND_CONSTANT * B * np.sqrt(a.shape[0] / n)
    if xp is not np:
        scale = xp.as_tensor(scale, dtype=a.dtype, device=a.device)
    return scale * xp.sqrt(a) / g


def centred_spread(class_means: ArrayLike, class_spread: ArrayLike, *, weights: ArrayLike | None = None):
    """a_k(mu_bar) = ||mu_k - mu_bar||^2 + s_k^2, the spread about the weighted centroid of the means.

    A head with a bias can be rewritten on centred features, W h + b = W (h - c) + (b + W c), so the
    bound holds with a_k(c) = ||mu_k - c||^2 + s_k^2 for any fixed c; the prior-weighted sum
    sum_k pi_k a_k(c) is smallest at c = mu_bar = sum_k pi_k mu_k (``theory.centring.bias``). It keeps
    the distances between class means: it is not s_k^2 alone. Step 12's caveats: the bound's statistic
    has a +1 (the bias's constant feature) left out here, and needs the norm constraint on (W, b + W c).

    Args:
        class_means: shape (K, d), mu_k (feature units).
        class_spread: shape (K,), s_k^2 >= 0, the mean squared deviation of class k about mu_k.
        weights: shape (K,), pi_k > 0 for the centroid (normalised here); uniform when None.

    Returns:
        shape (K,), the kind of ``class_means`` (squared feature units).
    """
    torch_in = _is_torch(class_means)
    mu_np = as_float_array("class_means", _to_numpy(class_means), ndim=2)
    s2_np = as_float_array("class_spread", _to_numpy(class_spread), nonnegative=True)
    K = mu_np.shape[0]
    if s2_np.shape != (K,):
        raise bad("class_spread", class_spread, f"one spread per class, shape ({K},), got {s2_np.shape}")
    if weights is None:
        pi_np = np.full(K, 1.0 / K)
    else:
        pi_np = as_float_array("weights", _to_numpy(weights))
        if pi_np.shape != (K,) or np.any(pi_np <= 0):
            raise bad("weights", weights, f"{K} strictly positive weights")
        pi_np = pi_np / pi_np.sum()
    if torch_in:
        import torch

        mu = class_means if class_means.is_floating_point() else class_means.to(torch.get_default_dtype())
        s2 = torch.as_tensor(class_spread, dtype=mu.dtype, device=mu.device)
        pi = torch.as_tensor(pi_np, dtype=mu.dtype, device=mu.device)
    else:
        mu, s2, pi = mu_np, s2_np, pi_np
    centre = (pi[:, None] * mu).sum(0)
    return ((mu - centre[None, :]) ** 2).sum(1) + s2


def power_mean(x: ArrayLike, r: float) -> ArrayLike:
    """M_r(x) = (mean x^r)^(1/r) for r != 0, the geometric mean for r = 0; x >= 0, shape (K,)."""
    torch_in = _is_torch(x)
    xp = __import__("torch") if torch_in else np
    x = x if torch_in else np.asarray(x, dtype=np.float64)
    if r == 0:
        return xp.exp(xp.log(x).mean())
    return (x**r).mean() ** (1.0 / r)


def gain_over_uniform(spread: ArrayLike, *, weights: ArrayLike | None = None, power: float = 2) -> ArrayLike:
    """Margin term at the optimum over that at uniform margins (J gains the bare power-mean ratio); <= 1.

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
