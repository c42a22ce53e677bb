"""pyproject.toml and environment.yml (Binder) list the same packages with the same floors."""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
CONDA_TO_PIP = {"pytorch-cpu": "torch"}


def _parse(spec: str) -> tuple[str, str]:
    m = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", spec)
    assert m, spec
    return m.group(1).lower(), m.group(2).replace(" ", "")


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_specs = project["dependencies"] + project["optional-dependencies"]["dev"]
    pip = dict(_parse(s) for s in pip_specs)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = {}
    for dep in env["dependencies"]:
        assert isinstance(dep, str), "keep environment.yml free of pip: sections"
        name, floor = _parse(dep)
        if name not in {"python", "pip"}:
            conda[CONDA_TO_PIP.get(name, name)] = floor
    assert conda == pip
    assert "conda-forge" in env["channels"]


def test_postbuild_is_executable_and_strict():
    post = ROOT / "postBuild"
    assert os.access(post, os.X_OK)
    text = post.read_text()
    assert text.startswith("#!") and re.search(r"^set -e", text, re.M)
    assert "pip install" in text and "-e ." in text
