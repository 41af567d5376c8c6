"""An Invocation rendered as the engine's create payload and as a plain `docker run` line; pure.

Both carry the same safe defaults, checked against golden files in tests/golden/.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from containerexec.model.invocation import Invocation

LOG_MAX_SIZE = "20m"  # the engine's own json log, per container: bounded on disk too
TMPFS_SIZE = "1g"


def create_kwargs(inv: Invocation, *, secrets: Mapping[str, str]) -> dict[str, Any]:
    """The `create_container` payload for an Invocation: pure, with the safe defaults."""
    env = dict(inv.env)
    env.update({name: secrets[name] for name in inv.secret_names if name in secrets})
    host_config: dict[str, Any] = {
        "mounts": [
            {"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only}
            for m in inv.mounts
        ],
        "network_mode": "bridge" if inv.network else "none",
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "privileged": False,
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,exec,nosuid,nodev,size={TMPFS_SIZE}"},
        # An init as PID 1 forwards SIGTERM to the command, so stop is graceful.
        "init": True,
        "pids_limit": inv.limits.pids,
        "log_config": {"type": "json-file", "config": {"max-size": LOG_MAX_SIZE, "max-file": "2"}},
    }
    lim = inv.limits
    if lim.memory_bytes:
        host_config["mem_limit"] = lim.memory_bytes
        host_config["memswap_limit"] = lim.memory_bytes  # no swap: an OOM is an OOM
    if lim.cpus:
        host_config["nano_cpus"] = int(lim.cpus * 1e9)
    if lim.shm_size_bytes:
        host_config["shm_size"] = lim.shm_size_bytes
    return {
        "image": inv.image,
        "command": list(inv.argv),
        "name": inv.name,
        "user": inv.user,
        "environment": env,
        "labels": dict(inv.labels),
        "working_dir": inv.workdir,
        "network_disabled": not inv.network,
        "host_config": host_config,
    }


def docker_run_command(
    inv: Invocation,
    *,
    name: str | None = None,
    interactive: bool = False,
    tty: bool = False,
    remove: bool = False,
    entrypoint: str | None = None,
    publish: Mapping[int, int] | None = None,
) -> list[str]:
    """The `docker run` argv equivalent to `create_kwargs(inv)`: pure, the same safe flags.

    Secrets appear as `-e NAME` only, so docker takes each value from its own
    environment. `publish` maps container ports to ports on 127.0.0.1, never beyond.
    """
    kw = create_kwargs(inv, secrets={})
    hc = kw["host_config"]
    args = ["docker", "run"]
    args += ["--interactive"] if interactive else []
    args += ["--tty"] if tty else []
    args += ["--rm"] if remove else []
    args += ["--name", name] if name else []
    args += ["--init"] if hc["init"] else []
    args += ["--pids-limit", str(hc["pids_limit"])]
    args += ["--read-only"] if hc["read_only"] else []
    for path, opts in sorted(hc["tmpfs"].items()):
        args += ["--tmpfs", f"{path}:{opts}"]
    for cap in hc["cap_drop"]:
        args += ["--cap-drop", cap]
    for opt in hc["security_opt"]:
        args += ["--security-opt", opt]
    args += ["--network", hc["network_mode"]]
    for port, host_port in sorted((publish or {}).items()):
        args += ["--publish", f"127.0.0.1:{host_port}:{port}"]
    args += ["--user", kw["user"]]
    args += ["--workdir", kw["working_dir"]] if kw["working_dir"] else []
    for m in hc["mounts"]:
        fields = ["type=bind", f"source={m['source']}", f"target={m['target']}"]
        fields += ["readonly"] if m["read_only"] else []
        args += ["--mount", ",".join(_csv_field(f) for f in fields)]
    for key, value in sorted(kw["environment"].items()):
        args += ["--env", f"{key}={value}"]
    for secret in inv.secret_names:
        args += ["--env", secret]
    if "mem_limit" in hc:
        args += ["--memory", str(hc["mem_limit"]), "--memory-swap", str(hc["memswap_limit"])]
    if "nano_cpus" in hc:
        args += ["--cpus", f"{hc['nano_cpus'] / 1e9:g}"]
    if "shm_size" in hc:
        args += ["--shm-size", str(hc["shm_size"])]
    log = hc["log_config"]
    args += ["--log-driver", log["type"]]
    for key, value in sorted(log["config"].items()):
        args += ["--log-opt", f"{key}={value}"]
    for key, value in sorted(kw["labels"].items()):
        args += ["--label", f"{key}={value}"]
    args += ["--entrypoint", entrypoint] if entrypoint is not None else []
    return [*args, kw["image"], *kw["command"]]


def _csv_field(text: str) -> str:
    """docker parses --mount as one CSV record: a path with a comma or quote needs quoting."""
    if any(c in text for c in ',"\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


# Podman's builder parses a label value as a Dockerfile word and fails on `${{` (every
# spec with a placeholder has one), with no escape that survives: such values are sent
# encoded, and both engines decode them when they read an image's labels.
ENCODED_LABEL = "containerexec-base64:"


def encode_label(value: str) -> str:
    """`value` as Podman's builder takes it unchanged: encoded when it holds `${`."""
    if "${" not in value:
        return value
    return ENCODED_LABEL + base64.b64encode(value.encode()).decode()


def decode_label(value: str) -> str:
    """The label value `encode_label` was given (any other value as it is)."""
    if not value.startswith(ENCODED_LABEL):
        return value
    try:
        return base64.b64decode(value[len(ENCODED_LABEL) :], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return value
