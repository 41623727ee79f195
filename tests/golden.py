"""Golden fixture files: each `*.json` in a folder is a list of cases with a `description`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest


def golden_cases(folder: Path, *, errors: bool | None = None) -> list[Any]:
    """The cases of every file in `folder` as pytest params (id: file stem and description);
    `errors=True` keeps only the cases that expect an error, `False` only the others."""
    cases = []
    for path in sorted(folder.glob("*.json")):
        for case in json.loads(path.read_text()):
            if errors is None or ("error" in case) == errors:
                cases.append(pytest.param(case, id=f"{path.stem}: {case['description']}"))
    return cases
