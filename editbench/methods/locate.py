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


def encore_solve(residuals: torch.Tensor, keys: torch.Tensor, cov: torch.Tensor, weight: float,
                 earlier_keys_moment: torch.Tensor | None, norm_weight: float) -> torch.Tensor:
    """ENCORE's update for one layer (encore_main.py, closed form): dW = R K^T (lam C + mu I + C_p +
    K K^T)^{-1}, float64, [out, in]; C_p = sum of K K^T of earlier batches (None: not kept).

    It minimises ||dW K - R||^2 + lam ||dW C^{1/2}||^2 + ||dW C_p^{1/2}||^2 + mu ||dW||^2: MEMIT's
    objective plus the earlier edits' keys kept in place and a norm penalty on the update (the
    "norm-constrained" part). mu = 0 and C_p = None give MEMIT's solve."""
    k = keys.double()
    system = weight * cov.to(k.device, torch.float64) + k @ k.T
    system = system + norm_weight * torch.eye(system.shape[0], dtype=torch.float64, device=k.device)
    if earlier_keys_moment is not None:
        system = system + earlier_keys_moment.to(k.device, torch.float64)
    return torch.linalg.solve(system, k @ residuals.to(k.device, torch.float64).T).T


def nullspace_projector(cov: torch.Tensor, threshold: float) -> torch.Tensor:
    """AlphaEdit's P = U_0 U_0^T: U_0 the eigenvectors of the key second moment C whose eigenvalues
    are below `threshold` (the reference takes singular values of C, the same for a symmetric PSD
    matrix). An update dW with dW (I - P) = 0 leaves every key in the span of the large eigenvectors,
    the keys the model already uses, mapped as before. float64, [in, in]."""
    c = cov.double()
    values, vectors = torch.linalg.eigh((c + c.T) / 2)
    small = vectors[:, values < threshold]
    return small @ small.T


def alphaedit_solve(residuals: torch.Tensor, keys: torch.Tensor, projector: torch.Tensor,
                    earlier_keys_moment: torch.Tensor, l2: float) -> torch.Tensor:
    """AlphaEdit's update for one layer (AlphaEdit_main.py): X = (P (K K^T + C_p) + l2 I)^{-1} P K R^T,
    dW = X^T, in float64, [out, in]. residuals R: [out, n], keys K: [in, n], C_p = sum of K K^T of the
    batches edited before (so new updates keep earlier edits' keys in place).

    X lies in the range of P: from (P A + l2 I) X = P B, l2 X = P (B - A X). Hence dW (I - P) = 0 exactly
    (up to rounding): the preserved keys' outputs do not move.
    """
    k = keys.double()
    p = projector.to(k.device, torch.float64)
    system = p @ (k @ k.T + earlier_keys_moment.to(k.device, torch.float64))
    system = system + l2 * torch.eye(system.shape[0], dtype=torch.float64, device=k.device)
    return torch.linalg.solve(system, p @ k @ residuals.to(k.device, torch.float64).T).T
