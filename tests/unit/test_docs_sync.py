"""The README and docs/ cannot drift from the code: links resolve, `minmo` flags exist, quoted defaults are
the code's, and the budget tables are what ``perf.memory_budget`` renders.

Like the chart's doc test (tests/helm/test_chart_docs.py): a doc that names a flag the CLI lost, a default
that changed, or a heading that moved fails here, naming the doc and the line.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from orchestrator.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "helm" / "README.md"]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
COMMAND = re.compile(r"\bminmo (serve|autoscale|talk|stack|demo|weights|gpu [a-z-]+|models import)\b")
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"(?ms)^```.*?^```", "", path.read_text())
    return {slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def subparser(parser: argparse.ArgumentParser, path: str) -> argparse.ArgumentParser:
    for word in path.split():
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        parser = actions[0].choices[word]
    return parser


def options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


def code_lines(text: str) -> list[tuple[int, str]]:
    """Lines of code blocks, and inline code spans, with their line numbers."""
    found, in_block = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            found.append((number, line))
        else:
            found.extend((number, span) for span in re.findall(r"`([^`]+)`", line))
    return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_and_their_anchors_resolve(doc: Path) -> None:
    broken = []
    for target in LINK.findall(doc.read_text()):
        if re.match(r"^[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}: no heading with that anchor in {path.relative_to(ROOT)}")
    assert not broken, f"{doc.relative_to(ROOT)}: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_minmo_flag_in_the_docs_exists(doc: Path) -> None:
    parser = build_parser()
    unknown = []
    for number, line in code_lines(doc.read_text()):
        commands = list(COMMAND.finditer(line))
        for index, match in enumerate(commands):
            end = commands[index + 1].start() if index + 1 < len(commands) else len(line)
            known = options(subparser(parser, match.group(1)))
            for flag in FLAG.findall(line[match.end() : end]):
                if flag not in known:
                    unknown.append(f"line {number}: minmo {match.group(1)} {flag}")
    assert not unknown, f"{doc.relative_to(ROOT)}: {unknown}"


def test_defaults_quoted_in_tables_are_the_servers() -> None:
    """Table cells like `--first-event-seconds 10` under a header that says 'default' quote the real default."""
    serve = options(subparser(build_parser(), "serve"))
    checked, wrong = 0, []
    for doc in DOCS:
        header = ""
        for number, line in enumerate(doc.read_text().splitlines(), start=1):
            if not line.startswith("|"):
                header = ""
                continue
            if not header:
                header = line
                continue
            if "default" not in header.lower():
                continue
            for flag, value in re.findall(r"`(--[a-z][a-z0-9-]*) ([0-9][0-9.]*)`", line):
                action = serve.get(flag)
                if action is None:
                    continue
                checked += 1
                if float(action.default) != float(value):
                    wrong.append(f"{doc.relative_to(ROOT)}:{number}: {flag} {value}, the server's is {action.default}")
    assert checked >= 10, "the bounds table's defaults were not found"
    assert not wrong, wrong


def test_the_budget_tables_are_what_the_generator_renders() -> None:
    from perf.memory_budget import main as budget_main

    out = ROOT / "out" / "docs-sync-budget.md"
    out.parent.mkdir(exist_ok=True)
    budget_main(["--values", str(ROOT / "services" / "gpu_profile" / "values-l20.yaml"), "--out", str(out)])
    rendered = out.read_text()
    doc = (ROOT / "docs" / "serving-the-real-model.md").read_text()
    for title in ("Weights per stage", "Sessions per L20 (all five models on one GPU)"):
        table = rendered.split(f"### {title}\n", 1)[1].split("\n\n", 2)[1]
        assert table in doc, f"docs/serving-the-real-model.md: the '{title}' table differs from perf.memory_budget's"
