"""helm/README.md's values table and the chart's values cannot drift apart."""

from __future__ import annotations

import re
from typing import Any

import helm_python as helm

from tests.helm.chart_render import CI_DIR, REPO_ROOT

README = REPO_ROOT / "helm" / "README.md"


def table_keys(section: str) -> list[str]:
    """Backticked names in the first column of the table under `## <section>`."""
    text = README.read_text().split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    keys: list[str] = []
    for line in text.splitlines():
        if line.startswith("| `"):
            first_column = line.split("|")[1]
            keys.extend(re.findall(r"`([^`]+)`", first_column))
    return keys


def lookup(values: dict[str, Any], dotted: str) -> Any:
    """`tritonPools[].gpus` reads the first pool's `gpus`; raises KeyError for a path values.yaml lacks."""
    node: Any = values
    for part in dotted.split("."):
        is_list = part.endswith("[]")
        node = node[part.removesuffix("[]")]
        if is_list:
            node = node[0]
    return node


def test_values_table_covers_every_top_level_key(chart: helm.Chart) -> None:
    documented = {key.split(".")[0].removesuffix("[]") for key in table_keys("Values")}
    assert set(chart.values) <= documented, f"undocumented: {sorted(set(chart.values) - documented)}"


def test_every_key_in_the_values_table_exists(chart: helm.Chart) -> None:
    keys = table_keys("Values")
    assert len(keys) > len(chart.values)
    for key in keys:
        lookup(chart.values, key)


def test_variants_table_lists_exactly_the_ci_files() -> None:
    assert sorted(table_keys("Variants (`helm/minmo-serve/ci/*-values.yaml`)")) == sorted(
        path.name for path in CI_DIR.glob("*-values.yaml")
    )


def test_values_yaml_comments_every_key_and_every_pool_field() -> None:
    """Top-level keys, their children and each field of the default pool carry a comment right above them."""
    lines = (REPO_ROOT / "helm" / "minmo-serve" / "values.yaml").read_text().splitlines()
    uncommented = []
    top = ""
    for number, line in enumerate(lines):
        match = re.match(r"^( *)(- )?([A-Za-z][\w./-]*):", line)
        if not match:
            continue
        depth = (len(match.group(1)) + (2 if match.group(2) else 0)) // 2
        top = match.group(3) if depth == 0 else top
        documented_level = depth <= 1 or (top == "tritonPools" and depth == 2)
        if documented_level and not lines[number - 1].strip().startswith("#"):
            uncommented.append(f"{number + 1}: {line.strip()}")
    assert not uncommented, uncommented
