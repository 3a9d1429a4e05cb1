"""ENCORE: its closed form, MPES (most-probable early stopping) and the earlier keys it keeps."""
from __future__ import annotations

import numpy as np
import torch

from editbench.harness.hparams import make_editor
from editbench.methods.locate import encore_solve, memit_solve


def _problem(seed: int = 0, d_in: int = 8, d_out: int = 5, n: int = 3):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(d_in, 2 * d_in, generator=g, dtype=torch.float64)
    cov = a @ a.T / (2 * d_in)
    keys, resid = torch.randn(d_in, n, generator=g).double(), torch.randn(d_out, n, generator=g).double()
    earlier = torch.randn(d_in, 4, generator=g).double()
    return cov, keys, resid, earlier @ earlier.T


def test_solve_is_the_minimiser_of_encores_objective_and_the_reference_formula():
    """dW minimises ||dW K - R||^2 + lam tr(dW C dW^T) + tr(dW C_p dW^T) + mu ||dW||^2 (the gradient
    vanishes there), and equals encore_main.py's steps computed independently in numpy:
    adj_k = solve(lam C + mu I + C_p + K K^T, K); dW = R adj_k^T."""
    cov, keys, resid, earlier = _problem()
    lam, mu = 3.0, 0.7
    dw = encore_solve(resid, keys, cov, lam, earlier, mu)
    var = dw.clone().requires_grad_(True)
    objective = ((var @ keys - resid) ** 2).sum() + lam * torch.trace(var @ cov @ var.T) \
        + torch.trace(var @ earlier @ var.T) + mu * (var ** 2).sum()
    objective.backward()
    assert var.grad.abs().max() < 1e-10
    C, K, R, Cp = (x.numpy() for x in (cov, keys, resid, earlier))
    adj_k = np.linalg.solve(lam * C + mu * np.eye(len(C)) + Cp + K @ K.T, K)
    np.testing.assert_allclose(dw.numpy(), R @ adj_k.T, rtol=1e-9, atol=1e-12)


def test_without_the_norm_term_and_earlier_keys_it_is_memits_solve():
    cov, keys, resid, _ = _problem(seed=1)
    assert torch.allclose(encore_solve(resid, keys, cov, 50.0, None, 0.0), memit_solve(resid, keys, cov, 50.0),
                          rtol=1e-12, atol=1e-14)
    # the norm penalty only shrinks the update
    assert encore_solve(resid, keys, cov, 50.0, None, 10.0).norm() < memit_solve(resid, keys, cov, 50.0).norm()


def _editor(lm, **over):
    return make_editor("encore", overrides=over, hparams_key=lm.hparams_key, model_type=lm.model.config.model_type)[0]


def test_mpes_stops_each_z_search_once_its_target_is_top_one(micro_lm, micro_requests):
    """Every request's search ends at the patience-th top-1 step or at its step limit; never later
    than the search without MPES, and earlier for at least one request."""
    with_mpes = _editor(micro_lm, mpes_patience=2, v_num_grad_steps=25, early_stop_loss=0.0)
    without = _editor(micro_lm, mpes_patience=0, v_num_grad_steps=25, early_stop_loss=0.0)
    batch = micro_requests[:4]
    stopped = with_mpes.edit(micro_lm, batch, {}).info
    full = without.edit(micro_lm, batch, {}).info
    for a, b in zip(stopped, full):
        assert a["top_one_steps"] == 2 or a["v_steps"] == 24, a
        assert a["v_steps"] <= b["v_steps"] == 24 and "top_one_steps" not in b
    assert any(a["v_steps"] < 24 for a in stopped)


def test_earlier_keys_are_the_solves_keys_and_round_trip_as_state(micro_lm, micro_requests):
    editor = _editor(micro_lm)
    cache: dict = {}
    seen = {}
    solve = editor.solve

    def spy(index, layer, residual, keys, stats):
        seen.setdefault(layer, []).append(keys.double().clone())
        return solve(index, layer, residual, keys, stats)

    editor.solve = spy
    for batch in (micro_requests[0:2], micro_requests[2:3]):
        editor.edit(micro_lm, batch, cache).apply(micro_lm.model)
    state = editor.state_dict()
    for layer, keys in seen.items():
        expected = sum(k @ k.T for k in keys)
        assert torch.allclose(state[f"earlier_keys/{layer}"], expected, rtol=1e-12, atol=1e-12)
    fresh = _editor(micro_lm)
    fresh.load_state_dict(state)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    assert _editor(micro_lm, add_prev_edits=False).state_dict() == {}
