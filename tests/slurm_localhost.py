"""A real SLURM on localhost for the tests (munge + slurmctld + one slurmd per node).

Everything lives in a temporary directory: its own munge key and socket, its
own slurm.conf reached through ``SLURM_CONF``, free ports, daemons bound to
127.0.0.1 (``CommunicationParameters=NoInAddrAny,NoCtldInAddrAny``), and
every daemon is stopped by the pid it wrote. Needs root and Debian's
``slurm-wlm`` and ``munge`` (installed by scripts/install.sh).

Several nodes on one machine: Debian's SLURM runs several ``slurmd -N name``
side by side, each with its own port, spool, log and pid file (``%n`` in
slurm.conf), all at 127.0.0.1; the machine's cores are shared out among them,
so a one-core job per node spreads jobs over the nodes.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 4096


class LocalSlurm:
    """Start with :meth:`start`, stop with :meth:`stop` (or use as a context manager)."""

    partition = "debug"

    def __init__(self, root: Path, nodes: int = 1):
        self.root = Path(root)
        self.node_names = ["localhost"] if nodes == 1 else [f"node{i}" for i in range(nodes)]
        self.conf = self.root / "slurm.conf"
        self.env = dict(os.environ)
        self.pids: list[Path] = []

    def _write_config(self) -> None:
        r = self.root
        for d in ("munge", "state", "spool", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        os.chmod(r / "munge", 0o700)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        n = len(self.node_names)
        cpus = max(1, (os.cpu_count() or 1) // n)
        mem = max(1024, (_mem_mib() - 2048) // n)
        nodes = "\n".join(
            f"NodeName={name} NodeHostname=localhost NodeAddr=127.0.0.1 Port={_free_port()} "
            f"CPUs={cpus} RealMemory={mem} State=UNKNOWN"
            for name in self.node_names
        )
        partition = (
            f"PartitionName={self.partition} Nodes={','.join(self.node_names)} Default=YES "
            "MaxTime=INFINITE State=UP OverSubscribe=YES"
        )
        self.conf.write_text(
            f"""ClusterName=catbuilder-test
SlurmctldHost=localhost
SlurmctldPort={_free_port()}
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
AuthType=auth/munge
AuthInfo=socket={r}/munge/munge.sock
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmUser=root
SlurmdUser=root
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
ReturnToService=2
MpiDefault=none
SchedulerType=sched/backfill
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool/%n
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd-%n.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd-%n.log
{nodes}
{partition}
"""
        )

    def start(self, timeout: float = 60.0) -> LocalSlurm:
        for exe in ("munged", "slurmctld", "slurmd", "sinfo"):
            if shutil.which(exe) is None:
                raise RuntimeError(f"{exe} not found: run scripts/install.sh (slurm-wlm, munge)")
        if os.geteuid() != 0:
            raise RuntimeError("the SLURM tests start slurmctld/slurmd and need root")
        self._write_config()
        r = self.root
        self.env["SLURM_CONF"] = str(self.conf)
        subprocess.run(
            [
                "munged",
                "--force",
                f"--socket={r}/munge/munge.sock",
                f"--key-file={r}/munge/munge.key",
                f"--log-file={r}/munge/munged.log",
                f"--pid-file={r}/munge/munged.pid",
                f"--seed-file={r}/munge/munged.seed",
            ],
            check=True,
            env=self.env,
        )
        self.pids.append(r / "munge" / "munged.pid")
        subprocess.run(["slurmctld"], check=True, env=self.env)
        self.pids.append(r / "slurmctld.pid")
        for name in self.node_names:
            subprocess.run(["slurmd", "-N", name], check=True, env=self.env)
            self.pids.append(self.slurmd_pid_file(name))
        deadline = time.time() + timeout
        while time.time() < deadline:
            res = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, env=self.env
            )
            states = res.stdout.split()
            if (
                res.returncode == 0
                and len(states) == len(self.node_names)
                and all(t in ("idle", "mix", "alloc") for t in states)
            ):
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"SLURM did not come up: {self.log_tail()}")

    def slurmd_pid_file(self, node: str) -> Path:
        return self.root / f"slurmd-{node}.pid"

    def log_tail(self) -> str:
        out = []
        for f in ["slurmctld.log"] + [f"slurmd-{n}.log" for n in self.node_names]:
            p = self.root / "log" / f
            if p.exists():
                out.append(f"{f}: " + " | ".join(p.read_text().splitlines()[-5:]))
        return "\n".join(out)

    def run(self, *cmd: str) -> subprocess.CompletedProcess:
        return subprocess.run(list(cmd), capture_output=True, text=True, env=self.env)

    def stop(self) -> None:
        for pid_file in reversed(self.pids):
            try:
                pid = int(pid_file.read_text().strip())
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        self.pids.clear()

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
