"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest
from firstwords.export.sample_data import Sample, build_sample


@pytest.fixture(scope="session")
def sample(tmp_path_factory) -> Sample:
    pytest.importorskip("torch")  # the bundle is made by our torch exporter
    pytest.importorskip("cv2")  # the session video
    return build_sample(tmp_path_factory.mktemp("sample"))
