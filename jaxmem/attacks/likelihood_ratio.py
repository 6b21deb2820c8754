"""The likelihood-ratio attack (LiRA) of Carlini et al. (2022), "Membership inference attacks from
first principles", and the global-threshold baseline.

Every score is "higher means more likely a member". φ is the logit-scaled confidence
(:func:`jaxmem.signals.logit_scaled_confidence`), one value per example and augmentation query a.
For example i and query a, the shadow models that trained on i (IN) and those that did not (OUT)
give a location μ (median by default, as in the reference code; or the mean) and a standard
deviation σ (ddof 0), with σ ← σ + ``eps`` as the reference code does (1e-30).

* online (Eq. 4 / Alg. 1):  mean_a [log N(φ_t; μ_in, σ_in) − log N(φ_t; μ_out, σ_out)]
* offline, one-sided (the paper's test, Sec. VI.C):  mean_a log Φ((φ_t − μ_out) / σ_out)
* offline, ``offline_variant="two_sided_density"`` (the reference code's ``generate_ours_offline``):
  −mean_a log N(φ_t; μ_out, σ_out)
* fixed variance (Sec. VI.A): one σ per hypothesis and query, pooled over examples from the
  deviations around each example's own mean, σ²_a = Σ_i Σ_{m∈set(i)} (φ − mean_i)² / Σ_i |set(i)|
  (all examples enter the pool, including those too thin to be scored). The reference code instead
  takes ``np.std`` of *all* IN scores (around the global mean, pooled over queries, after truncating
  every example to the smallest IN count) and uses it for *both* hypotheses online;
  ``fixed_variance="in"`` reproduces the "IN spread for both hypotheses" part of that quirk.

Medians are exact (equal to ``np.median`` of the φ values taken as float64: the middle value, or
the float64 mean of the two middle ones) and found by bit-bisection selection
(:mod:`jaxmem.attacks._select`), blocked over examples, under ``jit``. φ is held in float32;
medians, means, squared deviations, φ − μ and the scores are computed in float64 inside a
``jax.enable_x64(True)`` scope (the leave-one-out downdates of :func:`jaxmem.attacks.evaluate` need
it). Standardized distances are clipped to |z| ≤ 1e150 so that constant φ (σ = 0 + eps) gives
finite scores (0 for online when the target equals both locations). Examples with fewer than
``min_in`` IN / ``min_out`` OUT shadows get NaN and a
:class:`FewShadowsWarning` with the count.

Leaving a pair out (issue #21). When the target is one of the models of a *balanced* design
(every example IN for the same number k of the M models, :func:`jaxmem.subsets.balanced_keep`,
the LiRA construction) and its shadows are the other models, the target's membership fixes the
shadows' counts: a member has k − 1 IN and M − k OUT shadows, a non-member k IN and M − k − 1
OUT. The estimates of μ and σ then differ in sample size between members and non-members, and on
signals without any membership information online LiRA scored AUC 0.42 with 8 models and 0.48
with 16 (fixed variance 0.46 / 0.49), many standard errors below chance. :func:`pair_out` removes
the coupling: for each target and example it also leaves out one model of the *opposite*
membership, chosen uniformly at random (one draw per example from a generator seeded by a seed
and the target, so reproducible), so that
members and non-members alike see k − 1 IN and M − k − 1 OUT shadows (the LiRA reference code
gets the same counts by truncating every example to the smallest IN and OUT counts). It costs
one shadow per example. In Bernoulli and fixed-ratio designs the other models' rows are drawn
independently of the target's, so an example's shadow counts say nothing about its membership:
nothing is left out there (leaving a pair out would *create* a bias: members would keep one IN
shadow more than non-members). :func:`balanced_design` tells the two apart from ``keep``;
:func:`jaxmem.attacks.evaluate` does all this for every LiRA and RMIA variant and for the OUT
references' NLL ``reference_out`` (the attacks registered with ``pair_out``; ``pair_out="auto"``,
also with shadow subsets: the model is drawn among all models, then the subset's others are used), and
:func:`lira` takes the result as ``shadow_use``. A target that is not one of the design's
models (an audit of a model trained elsewhere) needs none of it.
"""

from __future__ import annotations

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import log_ndtr
from jaxtyping import ArrayLike, Bool, Float, Real

from jaxmem.attacks._checks import drop_nonfinite_shadows
from jaxmem.attacks._select import select_two_groups

__all__ = ["lira", "global_threshold", "FewShadowsWarning", "balanced_design", "pair_out", "PairOut"]

_Z_CLIP = 1e150
_F64 = jnp.float64  # used only inside ``jax.enable_x64(True)`` scopes
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_OFFLINE_VARIANTS = ("one_sided", "two_sided_density")


class FewShadowsWarning(UserWarning):
    """Some examples had too few IN/OUT shadow models to be scored (their scores are NaN)."""


# ----------------------------------------------------------------------------- shared pieces


def _as_phi(target_phi, shadow_phi, shadow_keep):
    target_phi = jnp.asarray(target_phi, jnp.float32)
    shadow_phi = jnp.asarray(shadow_phi, jnp.float32)
    shadow_keep = jnp.asarray(shadow_keep, bool)
    if target_phi.ndim == 1:
        target_phi = target_phi[:, None]
    if shadow_phi.ndim == 2:
        shadow_phi = shadow_phi[..., None]
    M, N, A = shadow_phi.shape
    if target_phi.shape != (N, A) or shadow_keep.shape != (M, N):
        raise ValueError(
            f"target_phi {target_phi.shape} must be [N, A] = {(N, A)} and shadow_keep "
            f"{shadow_keep.shape} [M, N] = {(M, N)} for shadow_phi [M, N, A] = {(M, N, A)}"
        )
    return target_phi, shadow_phi, shadow_keep


def _check_options(offline_variant, location, fixed_variance):
    if offline_variant not in _OFFLINE_VARIANTS:
        raise ValueError(f"offline_variant must be one of {_OFFLINE_VARIANTS}, got {offline_variant!r}")
    if location not in ("median", "mean"):
        raise ValueError(f"location must be 'median' or 'mean', got {location!r}")
    if fixed_variance not in (False, True, "in"):
        raise ValueError(f"fixed_variance must be False, True or 'in', got {fixed_variance!r}")


def _log_normal(x, mu, sd):
    z = jnp.clip((x - mu) / sd, -_Z_CLIP, _Z_CLIP)
    return -0.5 * z * z - jnp.log(sd) - _HALF_LOG_2PI


def score_from_stats(v, mu_in, sd_in, mu_out, sd_out, *, online, offline_variant, eps):
    """The LiRA score from per-query statistics (all broadcastable [..., A]), mean over the last axis.
    Everything in float64 (call inside ``jax.enable_x64(True)``): φ and the locations may come in
    float32, and φ − μ in float32 would round (it did before issue #21)."""
    v, mu_in, mu_out = (jnp.asarray(x, _F64) for x in (v, mu_in, mu_out))
    sd_out = sd_out + eps
    if online:
        s = _log_normal(v, mu_in, sd_in + eps) - _log_normal(v, mu_out, sd_out)
    elif offline_variant == "one_sided":
        s = log_ndtr(jnp.clip((v - mu_out) / sd_out, -_Z_CLIP, _Z_CLIP))
    else:
        s = -_log_normal(v, mu_out, sd_out)
    return jnp.mean(s, axis=-1)


def pooled_sd(ss, n):
    """sqrt(Σ_i SS_i / Σ_i n_i) over the example axis (-2 of ``ss`` [..., N, A], ``n`` [..., N])."""
    return jnp.sqrt(jnp.sum(ss, axis=-2) / jnp.maximum(jnp.sum(n, axis=-1), 1)[..., None].astype(ss.dtype))


def warn_few(n_bad, n_total, min_in, min_out, online, who="lira", stacklevel=3):
    if n_bad:
        need = f"{min_in} IN or {min_out} OUT" if online else f"{min_out} OUT"
        warnings.warn(
            f"{who}: {n_bad} of {n_total} scores come from fewer than {need} shadow models; "
            "they are NaN",
            FewShadowsWarning,
            stacklevel=stacklevel,
        )


# ----------------------------------------------------------------------------- per-example stats


def _sub_block_stats(x, in_mask, out_mask, j_in, j_out, *, n_next, want_order, extremes):
    """Statistics of a few examples: x [b, A, M], masks [b, M], ranks [b]."""
    b, A, M = x.shape
    xd = x.astype(_F64)
    out = {}
    for name, m in (("in", in_mask), ("out", out_mask)):
        n = jnp.sum(m, axis=-1)
        mb = m[:, None, :]
        mean = jnp.sum(jnp.where(mb, xd, 0.0), axis=-1) / n[:, None]
        ss = jnp.sum(jnp.where(mb, jnp.square(xd - mean[..., None]), 0.0), axis=-1)
        out.update({f"n_{name}": n, f"mean_{name}": mean, f"ss_{name}": ss})
        if extremes:  # min, max and their multiplicities (evaluate: is a leave-one-out set constant?)
            lo = jnp.min(jnp.where(mb, x, jnp.inf), axis=-1)
            hi = jnp.max(jnp.where(mb, x, -jnp.inf), axis=-1)
            out[f"min_{name}"], out[f"max_{name}"] = lo, hi
            out[f"cmin_{name}"] = jnp.sum(mb & (x == lo[..., None]), axis=-1)
            out[f"cmax_{name}"] = jnp.sum(mb & (x == hi[..., None]), axis=-1)
    if want_order:
        if j_in is None:
            j_in = jnp.maximum((out["n_in"] - 1) // 2, 0)
            j_out = jnp.maximum((out["n_out"] - 1) // 2, 0)
        rows = lambda a: jnp.broadcast_to(a[:, None], (b, A) + a.shape[1:]).reshape((b * A,) + a.shape[1:])
        v_in, v_out = select_two_groups(
            x.reshape(b * A, M), rows(in_mask), rows(out_mask), rows(j_in), rows(j_out), n_next
        )
        out["ord_in"] = v_in.reshape(b, A, n_next + 1)
        out["ord_out"] = v_out.reshape(b, A, n_next + 1)
    return out


@functools.partial(jax.jit, static_argnames=("n_next", "want_order", "sub", "extremes"))
def block_stats(phi, in_mask, out_mask, j_in=None, j_out=None, *, n_next, want_order, sub, extremes=False):
    """IN/OUT statistics of a block of examples. phi [M, B, A], masks [M, B] (disjoint), B % sub == 0.

    Returns a dict of counts ``n_in``/``n_out`` [B], means and sums of squared deviations
    ``mean_*``/``ss_*`` [B, A] (two-pass), and when ``want_order`` the order statistics
    ``ord_*`` [B, A, n_next + 1] starting at ranks ``j_*`` [B] (default: the lower median).
    Computed in ``lax.map`` over sub-blocks of ``sub`` examples, which keeps XLA's CPU loops in
    cache (several times faster than whole-block reductions).
    """
    M, B, A = phi.shape
    split = lambda a: a.reshape((B // sub, sub) + a.shape[1:])
    args = [split(jnp.transpose(phi, (1, 2, 0))), split(in_mask.T), split(out_mask.T)]
    has_j = j_in is not None
    if has_j:
        args += [split(j_in), split(j_out)]

    def fn(a):
        js = (a[3], a[4]) if has_j else (None, None)
        return _sub_block_stats(a[0], a[1], a[2], *js, n_next=n_next, want_order=want_order, extremes=extremes)

    out = jax.lax.map(fn, tuple(args))
    return {k: v.reshape((B,) + v.shape[2:]) for k, v in out.items()}


def blocked_stats(
    phi, in_mask, out_mask, *, n_next, want_order, extremes=False, rank_fn=None,
    block_elems=1 << 22, sub_elems=1 << 15,
):
    """:func:`block_stats` over blocks of examples (bounded memory), concatenated over N.

    ``rank_fn(n_in, n_out) -> (j_in, j_out)`` picks the first order statistic from the counts.
    """
    M, N, A = phi.shape
    sub = max(1, min(N, sub_elems // (M * A)))
    bn = sub * max(1, min(-(-N // sub), block_elems // (sub * M * A)))
    parts = []
    for i0 in range(0, N, bn):
        sl = slice(i0, min(i0 + bn, N))
        p, im, om = phi[:, sl], in_mask[:, sl], out_mask[:, sl]
        pad = bn - p.shape[1]
        if pad:  # one shape for every block: a single compilation
            p = jnp.pad(p, ((0, 0), (0, pad), (0, 0)))
            im = jnp.pad(im, ((0, 0), (0, pad)))
            om = jnp.pad(om, ((0, 0), (0, pad)))
        kw = {}
        if rank_fn is not None:
            kw["j_in"], kw["j_out"] = rank_fn(jnp.sum(im, 0), jnp.sum(om, 0))
        st = block_stats(p, im, om, n_next=n_next, want_order=want_order, sub=sub, extremes=extremes, **kw)
        parts.append({k: v[: bn - pad] for k, v in st.items()})
    return {k: jnp.concatenate([p[k] for p in parts]) for k in parts[0]}


# ----------------------------------------------------------------------------- public API


@functools.partial(jax.jit, static_argnames=("online", "fixed_variance", "offline_variant", "location"))
def _lira_from_stats(target, st, *, online, fixed_variance, offline_variant, location, min_in, min_out, eps):
    n_in, n_out = st["n_in"], st["n_out"]
    if location == "median":
        o_in, o_out = st["ord_in"].astype(_F64), st["ord_out"].astype(_F64)  # the median in float64
        mu_in = jnp.where(n_in[:, None] % 2 == 1, o_in[..., 0], 0.5 * (o_in[..., 0] + o_in[..., 1]))
        mu_out = jnp.where(n_out[:, None] % 2 == 1, o_out[..., 0], 0.5 * (o_out[..., 0] + o_out[..., 1]))
    else:
        mu_in, mu_out = st["mean_in"], st["mean_out"]
    if fixed_variance:
        sd_in = pooled_sd(st["ss_in"], n_in)
        sd_out = sd_in if fixed_variance == "in" else pooled_sd(st["ss_out"], n_out)
    else:
        sd_in = jnp.sqrt(st["ss_in"] / n_in[:, None])
        sd_out = jnp.sqrt(st["ss_out"] / n_out[:, None])
    s = score_from_stats(target, mu_in, sd_in, mu_out, sd_out, online=online, offline_variant=offline_variant, eps=eps)
    bad = (n_out < min_out) | ((n_in < min_in) & online)
    return jnp.where(bad, jnp.nan, s), jnp.sum(bad)


def lira(
    target_phi: Real[ArrayLike, " N *A"],
    shadow_phi: Real[ArrayLike, "M N *A"],
    shadow_keep: Bool[ArrayLike, "M N"],
    *,
    online: bool = True,
    fixed_variance: bool | str = False,
    offline_variant: str = "one_sided",
    location: str = "median",
    min_in: int = 2,
    min_out: int = 2,
    eps: float = 1e-30,
    shadow_use: Bool[ArrayLike, "M N"] | None = None,
) -> Float[np.ndarray, " N"]:
    """LiRA membership scores of one target model (Carlini et al. 2022, Alg. 1).

    Args:
      target_phi: [N, A] (or [N]) φ of the target model on the N examples, A queries.
      shadow_phi: [M, N, A] (or [M, N]) φ of the M shadow models.
      shadow_keep: [M, N] bool, True where shadow m trained on example i (IN).
      online: the two-hypothesis test (needs IN shadows); False: the offline OUT-only test.
      fixed_variance: False (per-example σ), True (σ pooled per hypothesis and query), or "in"
        (pooled IN σ for both hypotheses, the reference code's choice; see the module docstring).
      offline_variant: "one_sided" (log Φ, the paper) or "two_sided_density" (reference code).
      location: "median" (reference code) or "mean".
      min_in, min_out: examples with fewer IN (online only) / OUT shadows score NaN, with a
        :class:`FewShadowsWarning`.
      eps: added to every σ (the reference code's 1e-30).
      shadow_use: [M, N] bool, False where shadow m must not enter example i's IN/OUT sets
        (None: every shadow enters every example). With the target and its shadows drawn from
        one balanced design, pass ``shadow_use`` from :func:`pair_out` (see the module
        docstring: without it online LiRA is biased below chance there).

    Shadow models whose φ holds NaN/inf (diverged) are left out, with a
    :class:`~jaxmem.attacks.NonFiniteModelWarning` naming them; NaN/inf in the target's φ give
    NaN/±inf scores for those examples.

    Returns:
      [N] float64 numpy array, higher = more likely a member.

    Raises:
      ValueError: an unknown ``offline_variant``, ``location`` or ``fixed_variance``, or shapes
        that disagree (``target_phi`` [N, A], ``shadow_keep`` and ``shadow_use`` [M, N] for
        ``shadow_phi`` [M, N, A]).

    References:
      Carlini et al. (2022), "Membership inference attacks from first principles", IEEE S&P,
      Alg. 1, Eq. (4), Sec. VI.
    """
    _check_options(offline_variant, location, fixed_variance)
    use = np.ones(np.shape(shadow_keep), bool) if shadow_use is None else np.asarray(shadow_use, bool)
    if use.shape != np.shape(shadow_keep):
        raise ValueError(f"shadow_use {use.shape} must be [M, N] = {np.shape(shadow_keep)}, as shadow_keep")
    (shadow_phi, use), shadow_keep = drop_nonfinite_shadows("lira", [shadow_phi, use], shadow_keep)
    with jax.enable_x64(True):
        target_phi, shadow_phi, shadow_keep = _as_phi(target_phi, shadow_phi, shadow_keep)
        use = jnp.asarray(use, bool)
        st = blocked_stats(shadow_phi, shadow_keep & use, ~shadow_keep & use, n_next=1,
                           want_order=location == "median")
        if location != "median":
            st["ord_in"] = st["ord_out"] = None
        s, n_bad = _lira_from_stats(
            target_phi, st, online=bool(online), fixed_variance=fixed_variance,
            offline_variant=offline_variant, location=location, min_in=min_in, min_out=min_out, eps=eps,
        )
        s = np.asarray(s)
    warn_few(int(n_bad), s.shape[0], min_in, min_out, online)
    return s


def balanced_design(keep) -> bool:
    """Whether ``keep`` [M, N] is a balanced design: every example that some models train on and
    others do not is IN for the same number of models (:func:`jaxmem.subsets.balanced_keep`,
    grown in balanced blocks or not; ``leave_group_out_keep``). Then a target's membership fixes
    its shadows' IN/OUT counts, and LiRA leaves a pair out (:func:`pair_out`). Bernoulli and
    fixed-ratio designs give varying counts (False). Examples IN for all models or for none are
    ignored (LiRA cannot score them with every model as the target)."""
    keep = np.asarray(keep, bool)
    n = keep.sum(0)
    mixed = n[(n > 0) & (n < keep.shape[0])]
    return bool(mixed.size) and bool((mixed == mixed[0]).all())


def pair_out(keep, targets, seed=0):
    """For each target t and example i, the model left out together with t: one model of the
    opposite membership on i (an OUT model for a member of t, an IN model for a non-member),
    uniformly at random (a generator seeded by ``(seed, t)`` draws one uniform per example, so a
    target's choice does not depend on which other targets are asked for).

    Args:
      keep: [M, N] bool membership of every model of the design (all of them, usable or not:
        a model excluded from the shadows is drawn like any other, and then leaves nothing out;
        this keeps members' and non-members' shadow counts equal in distribution whatever subset
        of models is used as shadows).
      targets: [T] model indices.
      seed: the seed of the choice.

    Returns:
      [T, N] int64 model indices; −1 where no model has the opposite membership.

    See the module docstring for why (a balanced design biases online LiRA otherwise).
    """
    return PairOut(keep)(targets, seed)


class PairOut:
    """:func:`pair_out` for many blocks of targets: the per-example order of the models is
    computed once (an [M, N] int32 array), each call then costs O(T · N)."""

    def __init__(self, keep):
        keep = np.asarray(keep, bool)
        M, N = keep.shape
        self.keep, self.n_in = keep, keep.sum(0)
        # order[:, i]: the IN models of example i (in index order), then its OUT models
        pos = np.where(keep, np.cumsum(keep, 0) - 1, self.n_in + np.cumsum(~keep, 0) - 1)
        self.order = np.empty((M, N), np.int32 if M < 2**31 else np.int64)
        self.order[pos, np.arange(N)] = np.arange(M)[:, None]

    def __call__(self, targets, seed=0):
        return _pick(self.keep, self.n_in, self.order, np.asarray(targets, np.int64).reshape(-1), seed)


def _pick(keep, n_in, order, targets, seed):
    M, N = keep.shape
    cols = np.arange(N)
    out = np.empty((targets.size, N), np.int64)
    for j, t in enumerate(targets):
        member = keep[t]
        count = np.where(member, M - n_in, n_in)  # models of the opposite membership
        r = np.minimum((np.random.default_rng([seed, int(t)]).random(N) * count).astype(np.int64),
                       np.maximum(count - 1, 0))
        d = order[np.minimum(np.where(member, n_in + r, r), M - 1), cols]
        out[j] = np.where(count > 0, d, -1)
    return out


def global_threshold(target_phi: Real[ArrayLike, " N *A"]) -> Float[np.ndarray, " N"]:
    """The global-threshold baseline: the mean over queries of the target's φ.

    Args:
      target_phi: [N, A] or [N] φ (or any per-example confidence) of the target model.

    Returns:
      float64 [N], higher = more likely a member.

    References:
      Yeom et al. (2018), "Privacy risk in machine learning"; Carlini et al. (2022)'s
      ``generate_global`` in the LiRA reference code.

    Example:
      >>> global_threshold(np.array([[1.0, 3.0], [0.0, 1.0]]))
      array([2. , 0.5])
    """
    phi = np.asarray(target_phi, np.float64)
    return phi if phi.ndim == 1 else phi.mean(axis=-1)
