"""The deploy documentation against the built template: the configuration reference lists what `sam deploy --guided`
will ask for, and the README's deploy steps are the Makefile's."""

from __future__ import annotations

import json
import re
from typing import Any

from cfnlint.decode import cfn_yaml

from rewrap_local.artifacts import BUILD_DIR
from tests.permissions import ROOT


def documented_parameters() -> dict[str, str]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    table = text.split("| Parameter | Default | What it sets |", 1)[1].split("\n\n", 1)[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", table, flags=re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def shown(parameter: dict[str, Any]) -> str:
    if "Default" not in parameter:
        return "(required)"
    default = parameter["Default"]
    return f"`{default}`" if str(default) != "" else "(empty)"


def test_the_reference_lists_every_parameter_of_the_built_template_with_its_default() -> None:
    built = json.loads(json.dumps(cfn_yaml.load(str(BUILD_DIR / "template.yaml"))))
    expected = {name: shown(parameter) for name, parameter in built["Parameters"].items()}
    assert documented_parameters() == expected


def test_readme_deploy_commands_are_the_makefile_targets() -> None:
    text = (ROOT / "README.md").read_text()
    deploy = text.split("## Deploy to AWS", 1)[1].split("\n## ", 1)[0]
    assert "make package" in deploy and "sam deploy --guided" in deploy
    assert re.search(r"^package: .*## ", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
