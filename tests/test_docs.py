"""The README and docs/: short, linked, and agreeing with the data files and code they quote."""
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FINGERPRINTS = json.loads((ROOT / "docs" / "measurements" / "world-fingerprints.json").read_text())


def test_readme_fits_on_a_screen_and_its_links_exist():
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    links = re.findall(r"\]\(((?:docs/)[^)#]+)", text)
    assert len(links) >= 10 and all((ROOT / link).exists() for link in links)


def test_every_relative_link_in_docs_exists():
    broken = [f"{page.name}: {link}" for page in (ROOT / "docs").rglob("*.md")
              for link in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text())
              if not (page.parent / link).exists()]
    assert broken == []


def test_fingerprints_in_the_docs_are_the_data_files():
    table = (ROOT / "docs" / "world.md").read_text()
    current, retired = table.split("Retired with", 1)
    for machine, worlds in FINGERPRINTS["machines"].items():
        for world, sha in worlds.items():
            assert re.search(rf"\| `{world}` \|.*`{sha}`", current), (machine, world)
    for recipe in FINGERPRINTS["retired"].values():
        for machine, worlds in recipe.items():
            for world, sha in worlds.items():
                assert re.search(rf"\| `{world}` \(retired\) \|.*`{sha}`", retired), (machine, world)
    lead = FINGERPRINTS["machines"][FINGERPRINTS["leaderboard_machine"]]["default"]
    quoted = re.search(r"default world \(weights `([0-9a-f]+)`", README.read_text()).group(1)
    assert lead.startswith(quoted)
    listed = [worlds for worlds in FINGERPRINTS["machines"].values()] + [
        worlds for recipe in FINGERPRINTS["retired"].values() for worlds in recipe.values()]
    assert len(set(re.findall(r"`([0-9a-f]{64})`", table))) == sum(map(len, listed))


def test_every_run_setting_is_documented_for_the_python_api():
    from editbench.plan import GROUPS, plan_fields

    page = (ROOT / "docs" / "python-api.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in page.splitlines() if line.startswith("| ")}
    for field in plan_fields():
        assert f"`{field.name}`" in rows[field.metadata["group"]], field.name
    assert set(GROUPS) <= set(rows)


def test_the_metrics_table_lists_exactly_the_registered_metrics():
    from editbench.harness.metric_registry import METRICS

    page = (ROOT / "docs" / "metrics.md").read_text()
    table = page.split("| metric | definition | reference |", 1)[1].split("\n\n", 1)[0]
    documented = {name.strip().strip("`") for line in table.splitlines()[2:] if line.startswith("| ")
                  for name in line.split("|")[1].split(",")}
    documented = {n for n in documented if "⟨" not in n}  # per-group rows (locality_<group>, ...)
    assert documented == set(METRICS.names())


def test_the_typed_record_holds_every_per_edit_metric():
    from editbench.harness.metric_registry import PER_EDIT_FAMILIES, metric_names
    from editbench.harness.record import Scores

    assert set(Scores.__annotations__) == set(metric_names(*PER_EDIT_FAMILIES))
