"""The no-edit baseline: returns an empty delta, so every metric shows the unedited model."""
from __future__ import annotations

from editbench.core import Editor, EditorConfig, WeightDelta, register_editor


@register_editor("noedit")
class NoEdit(Editor[EditorConfig]):
    config_class = EditorConfig
    writes_weights = False  # returning nothing is what it is for

    def edit(self, lm, requests, cache=None) -> WeightDelta:
        return WeightDelta(tensors={}, info=[{} for _ in requests])
