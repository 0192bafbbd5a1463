import pytest

from llmrec.data.synth import SynthConfig, generate


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The built-in synthetic dataset at its smallest scale, generated once per test run."""
    return generate(tmp_path_factory.mktemp("synth") / "tiny", SynthConfig(scale="tiny", seed=0))
