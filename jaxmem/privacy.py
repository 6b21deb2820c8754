"""Differential-privacy accounting: the ε of a DP-SGD run (training itself is in
:mod:`jaxmem.train`; empirical lower bounds from attacks in :mod:`jaxmem.attacks.metrics`)."""

from __future__ import annotations

import math

__all__ = ["dp_epsilon", "run_epsilon", "gaussian_epsilon"]


def dp_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """ε of DP-SGD at ``delta`` from Google's RDP accountant (Poisson-subsampled Gaussian,
    Mironov 2017; Abadi et al. 2016). jaxmem samples by shuffling, as most DP-SGD code does; the
    Poisson accounting is the customary approximation and is reported as such."""
    import dp_accounting

    if noise_multiplier <= 0:
        return float("inf")
    acc = dp_accounting.rdp.RdpAccountant()
    event = dp_accounting.PoissonSampledDpEvent(sample_rate,
                                                dp_accounting.GaussianDpEvent(noise_multiplier))
    acc.compose(event, int(steps))
    return float(acc.get_epsilon(delta))


def run_epsilon(train_cfg, mean_examples_per_model: float) -> dict:
    """``{"epsilon", "delta"}`` of a run's DP-SGD config: sample rate B / n and
    round(epochs · ceil(n / B)) steps, n = the mean number of training examples per model."""
    n = mean_examples_per_model
    spe = math.ceil(n / train_cfg.batch_size)
    dp = train_cfg.dp
    return {"epsilon": dp_epsilon(dp.noise_multiplier, train_cfg.batch_size / n,
                                  int(round(train_cfg.epochs * spe)), dp.delta),
            "delta": dp.delta}


def gaussian_epsilon(noise_multiplier: float, delta: float) -> float:
    """The exact ε at ``delta`` of ONE Gaussian mechanism of sensitivity 1 and noise σ =
    ``noise_multiplier`` (Balle & Wang 2018, via ``dp_accounting.get_epsilon_gaussian``): the
    privacy of a simulated audit whose member scores are N(1, σ²) and non-member scores N(0, σ²).
    ``inf`` for σ ≤ 0."""
    import dp_accounting

    if noise_multiplier <= 0:
        return float("inf")
    return float(dp_accounting.get_epsilon_gaussian(noise_multiplier, delta))
