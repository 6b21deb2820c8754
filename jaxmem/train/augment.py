"""Training-time augmentation inside jit, one builder per registered augmentation
(:data:`jaxmem.train.augment_registry.AUGMENTATIONS`): flips (random or airbench94's alternating
flip), random translations, mixup, CutMix, random erasing and a RandAugment policy. (Test-time
queries are :mod:`jaxmem.data.queries`.)

Each builder splits into its random draws and a pure function of them (:func:`mix`,
:func:`box_mask`, :func:`paste`, :func:`erase_box`, :func:`randaugment_apply`), which the tests
check against float64 numpy references."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jaxmem.train.augment_registry import AUGMENTATIONS, parse_chain, resolve_args

__all__ = ["augment", "augment_batch", "mix", "box_mask", "paste", "erase_box",
           "randaugment_apply", "RANDAUGMENT_OPS", "AugmentError"]


class AugmentError(ValueError):
    """An augmentation applied to inputs it does not take (e.g. an image op on 1-D signals)."""


def _need_images(name, x):
    if x.ndim != 4:
        raise AugmentError(f"train.augment: {name} needs images [B, H, W, C], got inputs of "
                           f"shape {tuple(x.shape)}")


def augment(x, key, kind: str, pad: int = 2, *, idx=None, epoch=None, flip_key=None):
    """Flip and/or random translation (reflect-padded crop) per example, inside jit.

    ``flip``: each example flipped with probability 1/2 at every step. ``altflip`` (airbench94's
    alternating flip): example ``i`` is flipped in epoch ``e`` iff ``base(i) XOR (e odd)``, with
    ``base(i)`` a fair coin from ``fold_in(flip_key, i)`` drawn once per model.

    Raises:
        AugmentError: ``x`` is not a batch of images ``[B, H, W, C]``."""
    if kind == "none":
        return x
    _need_images(kind, x)
    kf, kc = jax.random.split(key)
    B, H, W, C = x.shape
    if kind.startswith("altflip"):
        base = jax.vmap(lambda i: jax.random.bernoulli(jax.random.fold_in(flip_key, i)))(idx)
        flip = base ^ (epoch % 2 == 1)
        x = jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
    elif "flip" in kind:
        flip = jax.random.bernoulli(kf, 0.5, (B,))
        x = jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x)
    if "crop" in kind:
        xp = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
        off = jax.random.randint(kc, (B, 2), 0, 2 * pad + 1)
        x = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (H, W, C)))(xp, off)
    return x


# ---------------------------------------------------------------- pure functions of the draws

def mix(x, y, perm, lam):
    """Mixup's blend: ``lam * a + (1 - lam) * a[perm]`` for the inputs and the (soft) targets.

    Args:
        x: inputs [B, ...]; y: targets [B, C] (rows summing to one); perm: int [B];
        lam: scalar or [B] weight of the example itself.
    Returns:
        (x, y) mixed; the target rows still sum to one."""
    lx = jnp.reshape(lam, jnp.shape(lam) + (1,) * (x.ndim - jnp.ndim(lam)))
    ly = jnp.reshape(lam, jnp.shape(lam) + (1,) * (y.ndim - jnp.ndim(lam)))
    return lx * x + (1 - lx) * x[perm], ly * y + (1 - ly) * y[perm]


def box_mask(H: int, W: int, lam, cy, cx):
    """CutMix's box (Yun et al. 2019, ``rand_bbox``): side ``int(size * sqrt(1 - lam))``, centred
    at (cy, cx), clipped to the image.

    Returns:
        (mask [H, W] bool, True inside the box; the label weight of the kept image
        ``1 - box area / (H W)``)."""
    rat = jnp.sqrt(1.0 - lam)
    ch, cw = jnp.floor(H * rat).astype(jnp.int32), jnp.floor(W * rat).astype(jnp.int32)
    y1, y2 = jnp.clip(cy - ch // 2, 0, H), jnp.clip(cy + ch // 2, 0, H)
    x1, x2 = jnp.clip(cx - cw // 2, 0, W), jnp.clip(cx + cw // 2, 0, W)
    r, c = jnp.arange(H)[:, None], jnp.arange(W)[None, :]
    mask = (r >= y1) & (r < y2) & (c >= x1) & (c < x2)
    return mask, 1.0 - ((y2 - y1) * (x2 - x1)).astype(jnp.float32) / (H * W)


def paste(x, y, perm, mask, lam):
    """CutMix's paste: inside ``mask`` [H, W] the pixels of ``x[perm]``; targets
    ``lam * y + (1 - lam) * y[perm]``."""
    xm = jnp.where(mask[None, :, :, None], x[perm], x)
    return xm, lam * y + (1 - lam) * y[perm]


def erase_box(img, top, left, h, w, noise):
    """Random erasing of one image [H, W, C]: the box rows [top, top + h), columns
    [left, left + w) replaced by ``noise`` [H, W, C]."""
    H, W = img.shape[:2]
    r, c = jnp.arange(H)[:, None], jnp.arange(W)[None, :]
    inside = (r >= top) & (r < top + h) & (c >= left) & (c < left + w)
    return jnp.where(inside[:, :, None], noise, img)


#: RandAugment's ops here (their range at magnitude 30: rotate 30 degrees, shear 0.3, translate
#: 0.45 of the side, brightness and contrast factors 1 +- 0.9, torchvision's ranges).
RANDAUGMENT_OPS = ("identity", "rotate", "shear_x", "shear_y", "translate_x", "translate_y",
                   "brightness", "contrast")


def _op_params(op, sign, frac, H, W):
    """(inverse matrix [2, 2], shift [2] (rows, cols), brightness factor, contrast factor)."""
    s = sign * frac
    th = jnp.deg2rad(30.0) * s * (op == 1)
    shx = 0.3 * s * (op == 2)
    shy = 0.3 * s * (op == 3)
    M = jnp.array([[jnp.cos(th), -jnp.sin(th)], [jnp.sin(th), jnp.cos(th)]])
    M = M @ jnp.array([[1.0, shy], [shx, 1.0]])
    shift = jnp.stack([0.45 * H * s * (op == 5), 0.45 * W * s * (op == 4)])
    bright = 1.0 + 0.9 * s * (op == 6)
    contrast = 1.0 + 0.9 * s * (op == 7)
    return M, shift, bright, contrast


def _warp(img, M, shift, fill):
    """Bilinear sample of img [H, W, C] at ``M (p - centre) + centre - shift`` for each pixel p,
    points outside the image reading ``fill`` (scipy's ``mode="grid-constant"``)."""
    H, W = img.shape[:2]
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    rr, cc = jnp.meshgrid(jnp.arange(H, dtype=jnp.float32) - cy,
                          jnp.arange(W, dtype=jnp.float32) - cx, indexing="ij")
    sr = M[0, 0] * rr + M[0, 1] * cc + cy - shift[0]
    sc = M[1, 0] * rr + M[1, 1] * cc + cx - shift[1]
    r0, c0 = jnp.floor(sr), jnp.floor(sc)
    fr, fc = sr - r0, sc - c0
    out = 0.0
    for dr, dc, wgt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                        (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        ri, ci = (r0 + dr).astype(jnp.int32), (c0 + dc).astype(jnp.int32)
        ok = (ri >= 0) & (ri < H) & (ci >= 0) & (ci < W)
        v = img[jnp.clip(ri, 0, H - 1), jnp.clip(ci, 0, W - 1)]
        out = out + wgt[:, :, None] * jnp.where(ok[:, :, None], v, fill)
    return out


def randaugment_apply(img, ops, signs, frac):
    """RandAugment on one image [H, W, C]: ops (int [K], indices of :data:`RANDAUGMENT_OPS`)
    applied in turn, each with direction ``signs`` [K] (+-1) at strength ``frac`` in [0, 1].
    Geometric ops sample bilinearly, outside the image the image's minimum (its background);
    brightness scales about the minimum, contrast about the mean. ``frac = 0`` is the identity."""
    H, W = img.shape[:2]
    for k in range(ops.shape[0]):
        M, shift, bright, contrast = _op_params(ops[k], signs[k], frac, H, W)
        lo = img.min()
        img = _warp(img, M, shift, lo)
        img = lo + bright * (img - lo)
        m = img.mean()
        img = m + contrast * (img - m)
    return img


# ---------------------------------------------------------------- builders (draws + pure part)

def _beta(key, alpha):
    return jnp.float32(1.0) if alpha == 0 else jax.random.beta(key, alpha, alpha)


def _mixup(x, y, key, a, ctx):
    kl, kp, kon = jax.random.split(key, 3)
    lam = jnp.where(jax.random.bernoulli(kon, a["p"]), _beta(kl, a["alpha"]), 1.0)
    return mix(x, y, jax.random.permutation(kp, x.shape[0]), lam)


def _cutmix(x, y, key, a, ctx):
    _need_images("cutmix", x)
    kl, kp, kc, kon = jax.random.split(key, 4)
    B, H, W = x.shape[:3]
    lam = jnp.where(jax.random.bernoulli(kon, a["p"]), _beta(kl, a["alpha"]), 1.0)
    cy, cx = jax.random.randint(kc, (2,), 0, jnp.array([H, W]))
    mask, lam_box = box_mask(H, W, lam, cy, cx)
    return paste(x, y, jax.random.permutation(kp, B), mask, lam_box)


def _erase(x, y, key, a, ctx):
    _need_images("erase", x)
    B, H, W, C = x.shape
    ka, kr, kt, kl, kn, kon = jax.random.split(key, 6)
    area = jax.random.uniform(ka, (B,), minval=a["area_min"], maxval=a["area_max"]) * H * W
    logr = jax.random.uniform(kr, (B,), minval=math.log(a["ratio"]), maxval=-math.log(a["ratio"]))
    h = jnp.clip(jnp.round(jnp.sqrt(area * jnp.exp(logr))), 1, H).astype(jnp.int32)
    w = jnp.clip(jnp.round(jnp.sqrt(area / jnp.exp(logr))), 1, W).astype(jnp.int32)
    top = jnp.floor(jax.random.uniform(kt, (B,)) * (H - h + 1)).astype(jnp.int32)
    left = jnp.floor(jax.random.uniform(kl, (B,)) * (W - w + 1)).astype(jnp.int32)
    noise = jax.random.normal(kn, x.shape, x.dtype)
    out = jax.vmap(erase_box)(x, top, left, h, w, noise)
    on = jax.random.bernoulli(kon, a["p"], (B,))
    return jnp.where(on[:, None, None, None], out, x), y


def _randaugment(x, y, key, a, ctx):
    _need_images("randaugment", x)
    B, K = x.shape[0], a["num_ops"]
    if K == 0:
        return x, y
    ko, ks = jax.random.split(key)
    ops = jax.random.randint(ko, (B, K), 0, len(RANDAUGMENT_OPS))
    signs = jnp.where(jax.random.bernoulli(ks, 0.5, (B, K)), 1.0, -1.0)
    frac = a["magnitude"] / 30.0
    out = jax.vmap(lambda im, o, s: randaugment_apply(im, o, s, frac))(x, ops, signs)
    return out.astype(x.dtype), y


def _flip_crop(x, y, key, a, ctx):
    return augment(x, key, ctx["name"], a.get("pad", 2), idx=ctx["idx"], epoch=ctx["epoch"],
                   flip_key=ctx["flip_key"]), y


_BUILDERS = {"flip_crop": _flip_crop, "mixup": _mixup, "cutmix": _cutmix, "erase": _erase,
             "randaugment": _randaugment}


def augment_batch(x, y, key, augment_name: str, augment_args=None, num_classes: int = 0, *,
                  idx=None, epoch=None, flip_key=None):
    """A batch under the ``train.augment`` chain, inside jit.

    Args:
        x: inputs [B, ...]; y: int labels [B]; key: this model's and step's key (the trainer's
        ``fold_in(augment stream, step)``); augment_name, augment_args: ``train.augment`` and
        ``train.augment_args``; num_classes: C (for the soft targets of a label-mixing chain);
        idx, epoch, flip_key: example ids, epoch and per-model key (altflip).
    Returns:
        (x, targets): targets are ``y`` unchanged unless the chain mixes labels, then float
        [B, C] rows summing to one (the loss takes soft targets).
    Raises:
        AugmentError: an augmentation applied to inputs it does not take (at trace time).
        ValueError: an unknown augmentation or a bad argument."""
    names = parse_chain(augment_name)
    args = resolve_args(augment_name, augment_args or {})
    mixes = any(AUGMENTATIONS[n].mixes_labels for n in names)
    t = jax.nn.one_hot(y, num_classes, dtype=jnp.float32) if mixes else y
    for i, n in enumerate(names):
        k = key if i == 0 else jax.random.fold_in(key, i)   # (one name: the key as before chains)
        if AUGMENTATIONS[n].inputs == "float" and not jnp.issubdtype(x.dtype, jnp.floating):
            raise AugmentError(f"train.augment: {n} needs float inputs, got {x.dtype}")
        ctx = {"name": n, "idx": idx, "epoch": epoch, "flip_key": flip_key}
        x, t = _BUILDERS[AUGMENTATIONS[n].builder](x, t, k, args[n], ctx)
    return x, t
