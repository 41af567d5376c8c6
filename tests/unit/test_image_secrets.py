"""A spec carried by an image gets no secret unless the user allows it by name."""

from __future__ import annotations

import pytest

from containerexec.cli.commands.modules import check_allowed
from containerexec.errors import UsageError
from containerexec.model.spec import parse_spec

SPEC = """
name: shared
environment: {image: 127.0.0.1:5000/shared@sha256:%s}
secrets: [API_TOKEN, DB_PASSWORD]
command: [python3, -c, pass]
""" % ("a" * 64)


def test_an_image_spec_asking_for_secrets_is_refused_naming_the_flags() -> None:
    spec = parse_spec(SPEC, "image")
    with pytest.raises(UsageError) as err:
        check_allowed("127.0.0.1:5000/shared:1", spec, ("API_TOKEN",))
    assert "DB_PASSWORD" in str(err.value) and "--allow-secret DB_PASSWORD" in str(err.value)
    assert "API_TOKEN," not in str(err.value)


def test_an_image_spec_is_accepted_once_the_user_allowed_every_secret_it_asks_for() -> None:
    spec = parse_spec(SPEC, "image")
    ref = "127.0.0.1:5000/shared:1"
    # Accepted means no UsageError: in any order, and names it does not ask for change nothing.
    assert check_allowed(ref, spec, ("API_TOKEN", "DB_PASSWORD")) is None
    assert check_allowed(ref, spec, ("DB_PASSWORD", "OTHER", "API_TOKEN")) is None
    without = parse_spec(SPEC.replace("secrets: [API_TOKEN, DB_PASSWORD]\n", ""), "image")
    assert without.secrets == [] and check_allowed(ref, without, ()) is None
