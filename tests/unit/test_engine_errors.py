"""The engine's one translation point and its registry classifier, on docker-py's own exceptions.

No daemon: each docker error is what docker-py itself makes of an HTTP answer
(`create_api_error_from_http_exception` over a `requests.Response` whose status we
set), and each DockerEngine test drives a `MagicMock(spec=docker.APIClient)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from unittest.mock import MagicMock

import docker
import docker.errors
import pytest
import requests
import requests.exceptions

from containerexec import errors
from containerexec.engine.base import EngineLost, StartFailed, WaitTimeout
from containerexec.engine.docker import DockerEngine
from containerexec.engine.dockererrors import Request, StreamError, registry_failure, translate
from containerexec.errors import PullError, RegistryFailure
from containerexec.model.arrays import Shard
from containerexec.model.bindings import Bindings
from containerexec.model.invocation import Invocation, resolve
from containerexec.model.spec import parse_spec

CID = "4f" * 32


def docker_error(status: int, explanation: str) -> docker.errors.APIError:
    """The exception docker-py raises for an engine answering `status` with `explanation`."""
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps({"message": explanation}).encode()
    try:
        docker.errors.create_api_error_from_http_exception(
            requests.exceptions.HTTPError(f"{status} error", response=response)
        )
    except docker.errors.APIError as exc:
        return exc
    raise AssertionError("docker-py raised nothing")


@pytest.mark.parametrize(
    ("answer", "status", "failure"),
    [
        (
            "manifest for r@sha256:1 not found: manifest unknown: manifest unknown",
            None,
            "not-found",
        ),
        ("manifest for r:nope not found: manifest unknown", 404, "not-found"),
        ("An image does not exist locally with the tag: 127.0.0.1:5000/x", None, "not-found"),
        ("unauthorized: authentication required", None, "denied"),
        (
            "pull access denied for x, repository does not exist or may require 'docker login'",
            404,
            "denied",
        ),  # noqa: E501
        (
            "Get https://nohost.example/v2/: dial tcp: lookup nohost.example: no such host",
            500,
            "bad-name",
        ),  # noqa: E501
        ("invalid reference format", 400, "bad-name"),
        (
            'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
            500,
            "unreachable",
        ),  # noqa: E501
        ("net/http: request canceled (Client.Timeout exceeded)", None, "unreachable"),
        ("received unexpected HTTP status: 503 Service Unavailable", None, "unavailable"),
        ("something the registry said", 502, "unavailable"),
        ("something the registry said", 400, "rejected"),
    ],
)
def test_one_classifier_says_what_a_registry_answer_means(
    answer: str, status: int | None, failure: RegistryFailure
) -> None:
    assert registry_failure(answer, status_code=status) == failure
    error = PullError(None, "r:1", answer, failure=failure)
    assert error.transient == (failure in ("unreachable", "unavailable"))


@pytest.mark.parametrize(
    "req",
    [
        Request("list containers"),
        Request("stop", container=CID),
        Request("inspect", container=CID),
        Request("attach to", container=CID),
    ],
)
def test_a_missing_container_is_never_reported_as_an_image(req: Request) -> None:
    exc = docker_error(404, f"No such container: {CID}")
    assert type(exc) is docker.errors.NotFound

    error = translate(exc, req)

    assert type(error) is errors.EngineError and not isinstance(error, errors.ImageError)
    assert (error.operation, error.container, error.status_code) == (
        req.operation,
        req.container,
        404,
    )
    assert "image" not in str(error) and "'-'" not in str(error)
    assert str(error).startswith(req.operation) and "No such container" in str(error)
    if req.container:
        assert f"container {CID[:12]}: " in str(error)


def invocation() -> Invocation:
    spec = parse_spec("name: wc\nenvironment: {image: 'r:1'}\ncommand: ['true']\n", "wc.yaml")
    return resolve(
        spec,
        Bindings({}, {}),
        Shard(0, "", 1),
        run_id="job-1",
        image="r:1",
        staging=Path("/nonexistent"),
        user="0:0",
        labels={},
    )


def test_a_missing_image_on_create_names_module_and_image() -> None:
    inv = invocation()
    exc = docker_error(404, "No such image: r:1")
    assert type(exc) is docker.errors.ImageNotFound

    error = translate(exc, Request("create", container=inv.name, image=inv.image, module="wc"))

    assert isinstance(error, errors.ImageError)
    assert (error.module, error.ref, error.operation) == ("wc", "r:1", "create")
    assert str(error) == "module 'wc': image 'r:1': not on this engine; pull it first"


def test_create_replaces_a_container_left_under_its_name() -> None:
    api = MagicMock(spec=docker.APIClient)
    api.create_container.side_effect = [docker_error(409, "Conflict. name in use"), {"Id": CID}]
    inv = invocation()

    assert DockerEngine(api).create(inv, secrets={}) == CID

    api.remove_container.assert_called_once_with(inv.name, force=True)
    assert api.create_container.call_count == 2


@pytest.mark.parametrize(
    ("explanation", "command_not_found"),
    [
        ('exec: "no-such-program": executable file not found in $PATH', True),
        ("exec: /app/run.sh: no such file or directory", True),
        ("cgroup setup failed", False),
        (f"No such container: {CID}", False),
    ],
)
def test_a_start_failure_says_whether_the_command_is_missing(
    explanation: str, command_not_found: bool
) -> None:
    api = MagicMock(spec=docker.APIClient)
    api.start.side_effect = docker_error(400 if command_not_found else 404, explanation)

    with pytest.raises(StartFailed) as caught:
        DockerEngine(api).start(CID)

    assert caught.value.command_not_found is command_not_found
    assert caught.value.container == CID and explanation in str(caught.value)


def test_a_wait_tells_a_timeout_from_a_lost_engine_and_a_vanished_container() -> None:
    api = MagicMock(spec=docker.APIClient)
    engine = DockerEngine(api)
    api.wait.side_effect = requests.exceptions.ReadTimeout("read timed out")
    with pytest.raises(WaitTimeout) as timeout:
        engine.wait(CID, timeout_s=2)
    assert timeout.value.timeout_s == 2 and timeout.value.container == CID

    api.wait.side_effect = requests.exceptions.ConnectionError("Connection refused")
    with pytest.raises(EngineLost) as lost:
        engine.wait(CID, timeout_s=None)
    assert lost.value.reason == "Connection refused"

    api.wait.side_effect = docker_error(404, f"No such container: {CID}")
    with pytest.raises(EngineLost, match="vanished"):
        engine.wait(CID, timeout_s=None)


def test_what_is_gone_or_going_is_no_error_to_stop_remove_or_inspect() -> None:
    api = MagicMock(spec=docker.APIClient)
    engine = DockerEngine(api)
    api.stop.side_effect = docker_error(404, f"No such container: {CID}")
    api.remove_container.side_effect = docker_error(
        409, f"removal of container {CID} is already in progress"
    )
    api.inspect_image.side_effect = docker_error(400, "invalid reference format")
    api.remove_image.side_effect = docker_error(404, "No such image: r:1")

    engine.stop(CID, grace_s=1)
    engine.remove(CID)
    assert engine.inspect_image("Not A Ref") is None
    engine.remove_image("r:1")

    api.remove_container.side_effect = docker_error(409, "container is paused")
    with pytest.raises(errors.EngineError) as caught:
        engine.remove(CID)
    assert caught.value.status_code == 409 and caught.value.container == CID


def test_pull_and_push_errors_carry_the_reference_and_the_classification() -> None:
    api = MagicMock(spec=docker.APIClient)
    engine = DockerEngine(api)
    refused = 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused'
    api.pull.side_effect = docker_error(500, refused)
    with pytest.raises(PullError) as pulled:
        engine.pull("127.0.0.1:1/x:1")
    api.push.return_value = iter([{"status": "preparing"}, {"error": "unauthorized: log in"}])
    with pytest.raises(PullError) as pushed:
        engine.push("127.0.0.1:1/x", "1")

    assert (pulled.value.module, pulled.value.ref, pulled.value.operation) == (
        None,
        "127.0.0.1:1/x:1",
        "pull",
    )
    assert pulled.value.failure == "unreachable" and pulled.value.transient
    assert pulled.value.answer == refused
    assert (pushed.value.ref, pushed.value.operation) == ("127.0.0.1:1/x:1", "push")
    assert pushed.value.failure == "denied" and not pushed.value.transient


def test_a_build_error_carries_the_failing_step_and_the_log_tail() -> None:
    log = [f"line {i}" for i in range(30)] + ["Step 3/4 : RUN exit 3"]
    exc = StreamError("The command '/bin/sh -c exit 3' returned a non-zero code: 3", step=log[-1])

    error = translate(exc, Request("build", image="t:1"), log=log)

    assert isinstance(error, errors.BuildError)
    assert (error.module, error.ref, error.step) == (None, "t:1", "Step 3/4 : RUN exit 3")
    assert error.log_tail == log[-20:]
    named = error.with_module("wc")
    assert str(named).startswith(
        "module 'wc': image 't:1': build failed: Step 3/4 : RUN exit 3: The command"
    )
    assert named.log_tail == error.log_tail and error.module is None


def test_no_engine_is_engine_unavailable_whatever_docker_raised() -> None:
    refused = requests.exceptions.ConnectionError("('Connection aborted.', Connection refused)")
    for exc, req in [
        (refused, Request("list containers")),
        (
            docker.errors.DockerException("Error while fetching server API version"),
            Request("connect"),
        ),  # noqa: E501
        (refused, Request("pull", image="r:1")),
    ]:
        error = translate(exc, req)
        assert isinstance(error, errors.EngineUnavailable) and error.operation == req.operation
        assert "No Docker engine answers at" in str(error)


def test_a_start_failure_says_when_the_command_cannot_be_executed() -> None:
    # What the engine answers for `command: [/etc]` in a container without an init.
    answer = (
        "failed to create shim task: OCI runtime create failed: runc create failed: unable "
        'to start container process: exec: "/etc": permission denied: unknown'
    )
    api = MagicMock(spec=docker.APIClient)
    api.start.side_effect = docker_error(400, answer)

    with pytest.raises(StartFailed) as caught:
        DockerEngine(api).start(CID)

    assert caught.value.cannot_exec and not caught.value.command_not_found


def test_a_denied_pull_carries_the_engines_own_login_command() -> None:
    # The adapter alone knows the engine's words: environment/ only repeats them.
    from containerexec.environment import images

    exc = docker_error(401, "unauthorized: authentication required")
    error = translate(exc, Request("pull", image="127.0.0.1:5000/x/y:1"))
    assert isinstance(error, errors.PullError) and error.login == "docker login 127.0.0.1:5000"
    assert "log in ('docker login 127.0.0.1:5000') and retry" in images.registry_advice(error)
