import pytest

from tests.certs import make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """One test PKI for the whole session (see tests/certs.py)."""
    return make_pki(tmp_path_factory.mktemp("pki"))
