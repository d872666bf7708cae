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
