"""A throwaway one-node Slurm cluster (slurmctld + slurmd as root, auth/none) for tests.

Its config, state and logs live in a temp folder; it listens on free ports, so it
never meets a cluster the machine already runs. Clients find it through SLURM_CONF.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from registry import Service, end_process, free_port

CONFIG = """\
ClusterName=cx
SlurmctldHost=localhost
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/log/slurmctld.log
SlurmdLogFile={dir}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobCompType=jobcomp/filetxt
JobCompLoc={dir}/log/jobcomp.txt
SchedulerParameters=sched_interval=1
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=100
KillWait=10
MinJobAge=600
NodeName=localhost NodeAddr=127.0.0.1 CPUs=8 RealMemory=16000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
DAEMONS = ("slurmctld", "slurmd")


def slurm_problem() -> str | None:
    """Why no test cluster can start here, or None."""
    missing = [b for b in (*DAEMONS, "sbatch", "squeue", "scancel") if shutil.which(b) is None]
    if missing:
        return f"{', '.join(missing)} not installed; run 'make slurm-package'"
    if os.geteuid() != 0:
        return "the test Slurm cluster runs its daemons as root"
    return None


class SlurmCluster(Service):
    """slurmctld and slurmd in the foreground (-D), each in its own session; stopped by PID."""

    def __init__(self, start_timeout_s: float = 30.0) -> None:
        self.start_timeout_s = start_timeout_s
        self.dir: Path | None = None
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def conf(self) -> Path:
        assert self.dir is not None, "the cluster is not started"
        return self.dir / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def log_tail(self, lines: int = 20) -> str:
        if self.dir is None:
            return ""
        out = []
        for name in DAEMONS:
            path = self.dir / "log" / f"{name}.log"
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path}\n" + "\n".join(tail))
        return "\n".join(out)

    def start(self) -> SlurmCluster:
        self.dir = Path(tempfile.mkdtemp(prefix="cx-slurm-"))
        for sub in ("state", "spool", "log"):
            (self.dir / sub).mkdir()
        self.conf.write_text(CONFIG.format(dir=self.dir, ctld_port=free_port(), d_port=free_port()))
        try:
            for name in DAEMONS:
                with open(self.dir / "log" / f"{name}.out", "wb") as out:
                    self.procs.append(
                        subprocess.Popen(
                            [name, "-D", "-f", str(self.conf)],
                            env=self.env,
                            stdin=subprocess.DEVNULL,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            self._wait_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{proc.args[0]} exited with {proc.returncode} while starting:\n"
                        + self.log_tail()
                    )
            # sinfo blocks while slurmctld is not up yet: bound each poll.
            try:
                out = subprocess.run(
                    ["sinfo", "-h", "-o", "%t"],
                    env=self.env,
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=False,
                ).stdout.split()
            except subprocess.TimeoutExpired:
                out = []
            if "idle" in out:
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"the test Slurm cluster was not idle within {self.start_timeout_s:g} s:\n"
            + self.log_tail()
        )

    def stop(self) -> None:
        """`scontrol shutdown`, then terminate (and kill) our own daemons by PID."""
        if self.procs:
            subprocess.run(
                ["scontrol", "shutdown"], env=self.env, capture_output=True, timeout=15, check=False
            )
        for proc in self.procs:
            end_process(proc, timeout_s=10)
        self.procs = []
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
