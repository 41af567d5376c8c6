"""The examples' collection needs no engine: moved from tests/examples/test_examples.py,
whose every other test runs an example in containers."""

from __future__ import annotations

from examples.test_examples import EXAMPLES, SPECS


def test_the_wordcount_example_is_collected() -> None:
    assert SPECS / "wordcount.yaml" in EXAMPLES
