"""Forward hooks, only ever inside context managers: every hook is removed on exit, also on errors.

A module's output may be a tensor or a tuple whose first item is the hidden states (decoder blocks
in some transformers versions); both are handled.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


def _with_hidden(output, hidden: torch.Tensor):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@dataclass
class Captured:
    """The input (first positional argument) and output hidden states of a module's last call
    (empty tensors until it is called: `calls` says how often it was)."""

    input: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    output: torch.Tensor = field(default_factory=lambda: torch.empty(0))
    calls: int = field(default=0)


@contextmanager
def capture(module: nn.Module, detach: bool = True) -> Iterator[Captured]:
    """Record what `module` reads and writes on each forward pass inside the block."""
    seen = Captured()

    def hook(_module, args, output):
        x, y = args[0], _hidden(output)
        seen.input = x.detach() if detach else x
        seen.output = y.detach() if detach else y
        seen.calls += 1

    with forward_hook(module, hook):
        yield seen


class StopForward(Exception):
    """Raised by `stop_after` to end a forward pass whose later layers nobody reads."""


@contextmanager
def forward_hook(module: nn.Module, hook: Callable) -> Iterator[None]:
    """`hook` registered on `module` for forward passes inside the block, removed after."""
    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def stop_after(module: nn.Module):
    """Forward passes inside the block end (with StopForward) as soon as `module` has run: hooks
    registered on it earlier have seen its input and output by then."""

    def hook(_module, _args, _output):
        raise StopForward

    return forward_hook(module, hook)


def rewrite_output(module: nn.Module, change: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]):
    """Replace the module's output hidden states h by change(x, h), x its first input, inside the block."""
    return forward_hook(module, lambda _module, args, output: _with_hidden(output, change(args[0], _hidden(output))))


def edit_output(module: nn.Module, change: Callable[[torch.Tensor], torch.Tensor]):
    """Replace the module's output hidden states h by change(h) for forward passes inside the block (the
    module may be called with keyword arguments only, as attention blocks are: its input is not read)."""
    return forward_hook(module, lambda _module, _args, output: _with_hidden(output, change(_hidden(output))))


@contextmanager
def without_output_hooks(module: nn.Module) -> Iterator[None]:
    """The module's forward hooks (an installed patch among them) taken off for the block and put back
    in their order after: an editor that trains its own replacement of the module's output starts from
    the module's own output, as the reference does, not from a patch of an earlier step."""
    hooks = dict(module._forward_hooks)
    module._forward_hooks.clear()
    try:
        yield
    finally:
        module._forward_hooks.update(hooks)


def add_at_positions(rows: torch.Tensor, positions: torch.Tensor, vector: torch.Tensor):
    """A `change` for edit_output: add `vector` to the hidden state at (rows[i], positions[i]).

    Out of place, so autograd can differentiate through it with respect to `vector`.
    """

    def change(hidden: torch.Tensor) -> torch.Tensor:
        if hidden.shape[1] <= int(positions.max()):
            return hidden  # a shorter pass (e.g. generation step) does not contain the positions
        added = torch.zeros_like(hidden)
        added[rows, positions] = vector.to(hidden.dtype)
        return hidden + added

    return change
