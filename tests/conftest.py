"""Fixtures shared by the whole suite (the engine's own live in tests/autograd/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def hf_offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep `datasets` offline and its cache out of the user's home, for one test module.

    huggingface_hub and datasets read HF_HUB_OFFLINE / HF_DATASETS_CACHE when they are
    imported, so setting the environment alone is too late once anything imported them:
    patch the module constants too. The environment is set as well, for subprocesses.
    """
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    hf_cache = tmp_path_factory.mktemp("hf_datasets")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("HF_DATASETS_CACHE", str(hf_cache))
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_HUB_OFFLINE", True)
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", hf_cache)
        yield
