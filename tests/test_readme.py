"""The README's examples are what the code accepts, and CI runs the README's test command."""

import json
import re
from pathlib import Path

from eslchan.config import MetaflowConfig
from metaflow.registry import ModuleRegistry
from metaflow.validation import TreeValidator

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text("utf-8")


def test_ci_runs_the_readme_test_command_verbatim():
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    test_command = blocks[1].strip()  # the second of the two set-up commands
    assert "pytest" in test_command
    assert test_command in (REPO / ".ci" / "run").read_text("utf-8")


def test_every_metaflow_example_in_the_readme_validates():
    validator = TreeValidator(ModuleRegistry(), MetaflowConfig(media={"welcome": "tone_stream://%(400,200,523)"}))
    examples = [json.loads(b) for b in re.findall(r"```json\n(.*?)\n```", README, re.S)]
    # the tour's curl metaflow, with its shell quoting removed
    tour = re.search(r"-d '(\{\"action\": \"metaflow\".*?)' \\\n", README, re.S)
    examples.append(json.loads(tour.group(1)))
    assert len(examples) >= 2
    for body in examples:
        tree = validator.validate(body)
        assert tree["module"] in ModuleRegistry().names()
