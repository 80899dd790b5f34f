"""The Dockerfile parsed once for the deploy tests (there is no Docker engine to build it)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

Instruction = tuple[str, str]  # (KEYWORD, arguments with whitespace collapsed)


def instructions_from_dockerfile(text: str) -> list[Instruction]:
    """One (KEYWORD, arguments) per instruction: continuation lines joined, comments dropped."""
    pairs = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, arguments = line.partition(" ")
            pairs.append((keyword.upper(), " ".join(arguments.split())))
    return pairs


@pytest.fixture(scope="session")
def dockerfile_stages() -> list[list[Instruction]]:
    """The Dockerfile's build stages in order, each starting with its FROM."""
    stages: list[list[Instruction]] = []
    for keyword, arguments in instructions_from_dockerfile((ROOT / "Dockerfile").read_text()):
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, arguments))
    return stages
