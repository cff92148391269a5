"""caldav pulls in niquests and urllib3-future, whose wheel replaces urllib3 (STACK-NOTES)."""

import urllib3

REINSTALL = (
    "urllib3 was replaced by urllib3-future; reinstall with "
    "URLLIB3_NO_OVERRIDE=1 PIP_NO_BINARY=urllib3-future pip install -e '.[test]'"
)


def test_urllib3_is_the_real_urllib3_2() -> None:
    version = tuple(int(part) for part in urllib3.__version__.split(".")[:2])
    assert version[0] == 2, f"urllib3 {urllib3.__version__}: {REINSTALL}"
    assert version < (2, 25), f"urllib3 {urllib3.__version__}: {REINSTALL}"
