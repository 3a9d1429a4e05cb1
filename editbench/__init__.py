"""editbench: a benchmark harness for knowledge-editing methods.

The Python API lives in `editbench.api` and is re-exported here on first use (nothing heavy is
imported by `import editbench` itself): load, Request, get_editor, edit, world_edits, run,
load_results, world_path (a world's folder by size: shipped, or built once into the cache). See the README's "Python API".
"""

__all__ = ["load", "Request", "get_editor", "edit", "Edit", "world_edits", "run", "load_results", "Results", "RunPlan",
           "world_path", "__version__"]


def _version() -> str:
    """The installed package's version (what `editbench --version` prints)."""
    from importlib import metadata

    try:
        return metadata.version("editbench")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def __getattr__(name: str):
    if name == "__version__":
        return _version()
    if name in __all__:
        from editbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'editbench' has no attribute {name!r}")
