"""Closed-form solves of locate-then-edit methods (ROME, MEMIT). Pure tensor -> tensor; imports only torch.

Conventions: a weight W is [out, in]; keys k live in the `in` space (inputs of the MLP output
projection), values v in the `out` space; C = E[k k^T] is the uncentred second moment of keys.
"""
from __future__ import annotations

import torch


def second_moment(keys: torch.Tensor, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, int]:
    """Sum of k k^T over the rows of `keys` [n, d], and n. Divide by the total n for E[k k^T]."""
    k = keys.to(dtype)
    return k.T @ k, k.shape[0]


def is_positive_definite(matrix: torch.Tensor) -> bool:
    """Whether a symmetric matrix is positive definite (finite, Cholesky succeeds)."""
    if not torch.isfinite(matrix).all():
        return False
    _, info = torch.linalg.cholesky_ex(matrix.double())
    return int(info) == 0


def rome_direction(k_star: torch.Tensor, cov: torch.Tensor | None) -> torch.Tensor:
    """The key-space direction of ROME's update: C^{-1} k* (or k* itself without the C adjustment)."""
    if cov is None:
        return k_star.double()
    # C may sit on another device than the layer (a model split across devices): follow the key
    return torch.linalg.solve(cov.to(k_star.device, torch.float64), k_star.double())


def rome_rank_one(v_star: torch.Tensor, v_now: torch.Tensor, k: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """ROME's update dW = (v* - W k) d^T / (d^T k) with d = C^{-1} k*, in float64, [out, in].

    Then (W + dW) k = W k + (v* - W k) = v*, and any key j with d^T j = 0 (orthogonal to k* in the
    C^{-1} metric) maps exactly as before.
    """
    d = direction.double()
    return torch.outer(v_star.double() - v_now.double(), d) / torch.dot(d, k.double())


def memit_solve(residuals: torch.Tensor, keys: torch.Tensor, cov: torch.Tensor, weight: float) -> torch.Tensor:
    """MEMIT's batch update for one layer, dW = R K^T (lam C + K K^T)^{-1}, in float64, [out, in].

    residuals R: [out, n], keys K: [in, n]. It is the minimiser of
    ||dW K - R||^2 + lam ||dW C^{1/2}||^2, i.e. of ||(W + dW) K - V||^2 + lam ||dW C^{1/2}||^2 with R = V - W K.
    """
    k = keys.double()
    system = weight * cov.to(k.device, torch.float64) + k @ k.T  # C follows the layer's device  # symmetric, so solving with it on the right is a transpose away
    return torch.linalg.solve(system, k @ residuals.to(k.device, torch.float64).T).T
