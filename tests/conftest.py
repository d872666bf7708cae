import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def chelsea() -> np.ndarray:
    from fcm.images import bundled_photo

    return bundled_photo("chelsea")


@pytest.fixture(scope="session")
def lite0():
    from fcm.models import get_model

    return get_model("efficientnet_lite0", "stage4")


@pytest.fixture(scope="session")
def readme_figures():
    """tools/readme_figures.py as a module (the script that writes the README's measured figures)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "readme_figures.py"
    spec = importlib.util.spec_from_file_location("readme_figures", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
