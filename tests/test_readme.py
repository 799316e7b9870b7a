"""The README's hand-composed pipeline must run as printed."""
import pathlib
import re

import torch

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    data = namespace["data"]
    assert data.numel() == 200 and "latent_log_prob" in data.keys()
    assert torch.equal(data["action"], data["latent"])  # collected through the identity decoder
    decoder = namespace["decoder"]
    assert not torch.equal(decoder.decode(data["observation"], data["latent"]), data["latent"])  # refit moved it
