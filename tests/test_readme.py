"""The README's worked example of adding a method really works, and is picked up by the runner."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from saliency_sanity.methods import METHODS, available_methods, get_method
from saliency_sanity.methods.gradients import gradient

ROOT = Path(__file__).resolve().parents[1]


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Adding a method", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def test_readme_method_example_registers_a_working_method(shipped_models, images):
    try:
        exec(compile(readme_example(), "README.md", "exec"), {})
        assert "gradient_x_sign" in available_methods()
        model = shipped_models["cnn"]
        target = torch.zeros(len(images), dtype=torch.long)
        maps = get_method("gradient_x_sign")(model, images, target, batch_size=2)
        assert maps.shape == images.shape
        assert torch.equal(maps, gradient(model, images, target) * torch.sign(images))
    finally:
        METHODS.remove("gradient_x_sign") if "gradient_x_sign" in METHODS else None
