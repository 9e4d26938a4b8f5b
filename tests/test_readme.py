"""The README's Python examples run as written, in order, and give what their comments say."""

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_readme_examples_run_and_match_their_comments(capsys) -> None:
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 3
    namespace: dict[str, object] = {}
    printed = []
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
        printed.append(capsys.readouterr().out.splitlines())
    assert namespace["y"].shape == (8, 64, 16, 16)
    assert namespace["make_taps"](4).tolist() == [0.125, 0.375, 0.375, 0.125]
    assert namespace["w"].is_contiguous(memory_format=torch.channels_last)
    assert len(printed[1]) == 6  # the sites of the ResNet-18: one line each


def test_readme_study_spec_loads(tmp_path) -> None:
    """The spec the README shows is one a study accepts."""
    from ablate.spec import load_spec

    blocks = re.findall(r"^```yaml\n(.*?)^```", README.read_text(), flags=re.MULTILINE | re.DOTALL)
    (spec,) = [block for block in blocks if block.startswith("name:")]
    path = tmp_path / "my-study.yaml"
    path.write_text(spec)
    loaded = load_spec(path)
    assert loaded.name == "my-study" and [c.metric for c in loaded.constraints] == ["accuracy"]

