"""Starting the environment processes from Python: ``agent-server env`` (the embedded rack
simulator) or an OMNeT++ Cmdenv run (``scripts/omnetpp-run.sh``'s invocation; the modules are
built once per launcher) connected to the adapter's endpoint, one per slot, stopped on
``close()``.

Each process writes its log (and, for rack-sim, one JSON report per episode) into a private
folder; ``check()`` raises ``EnvExited`` with the log's tail when a process died, which the
hub calls while it waits, so a crashed env surfaces within a poll slice instead of a timeout.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import BridgeError, EnvExited

log = logging.getLogger(__name__)

#: How long the env waits for each agent reply before giving up (its --timeout-s). A learner
#: pausing between two steps (a gradient update, an evaluation) must stay below it.
DEFAULT_ENV_TIMEOUT_S = 300.0
#: Episodes a launched rack-sim process runs before it exits: practically endless; the
#: adapter restarts processes on reset(seed=...) anyway.
ENDLESS_EPISODES = 1 << 40
#: OMNeT++ runs (episodes) per launched Cmdenv process.
DEFAULT_OMNETPP_RUNS = 100
#: Bound on building the OMNeT++ modules (the first build compiles the C++ core).
OMNETPP_BUILD_TIMEOUT_S = 1800
#: Bound on a process's exit after SIGTERM before it is killed.
STOP_TIMEOUT_S = 5.0
LOG_TAIL_LINES = 20

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """The child gets SIGTERM when the Python process dies (Linux), so no env outlives it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def find_repo_root(start: Optional[Path] = None) -> Optional[Path]:
    """The repository checkout: ``$MALCOLM_REPO``, else the first parent of ``start`` (the
    working directory) holding ``proto/malcolm`` and ``rack-sim``."""
    env = os.environ.get("MALCOLM_REPO")
    if env:
        return Path(env)
    p = (start or Path.cwd()).resolve()
    for d in [p, *p.parents]:
        if (d / "proto" / "malcolm").is_dir() and (d / "rack-sim").is_dir():
            return d
    return None


def find_agent_server(explicit: Optional[str] = None) -> str:
    """``explicit``, ``$MALCOLM_AGENT_SERVER_BIN``, ``agent-server`` on PATH, or the
    repository's ``target/release/agent-server``."""
    for cand in (explicit, os.environ.get("MALCOLM_AGENT_SERVER_BIN")):
        if cand:
            if not (os.path.isfile(cand) and os.access(cand, os.X_OK)):
                raise BridgeError(f"agent-server binary {cand} does not exist or is not executable")
            return cand
    on_path = shutil.which("agent-server")
    if on_path:
        return on_path
    root = find_repo_root()
    if root is not None and (root / "target" / "release" / "agent-server").is_file():
        return str(root / "target" / "release" / "agent-server")
    raise BridgeError(
        "agent-server not found: build it (cargo build --release -p agent-server), put it on PATH, "
        "or set MALCOLM_AGENT_SERVER_BIN"
    )


def omnetpp_available() -> bool:
    root = os.environ.get("OMNETPP_ROOT")
    if root:
        return os.access(os.path.join(root, "bin", "opp_run"), os.X_OK)
    return shutil.which("opp_run") is not None


def omnetpp_config_for(scenario: str, repo: Path) -> str:
    """The ini config matching an embedded scenario name (``hetero`` -> ``Hetero``), as
    ``scripts/combined-run.sh`` picks it."""
    want = scenario.split(":", 1)[0]
    configs = []
    for line in (repo / "ini" / "omnetpp.ini").read_text().splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            name = line[1:-1].removeprefix("Config ").strip()
            if name != "General":
                configs.append(name)
    for c in configs:
        if c.lower() == want.lower():
            return c
    raise BridgeError(
        f"no OMNeT++ ini config named like scenario {want!r} (configs: {', '.join(configs)}); "
        "pass omnetpp_config=..."
    )


@dataclass
class _Proc:
    popen: subprocess.Popen
    name: str
    log_path: Path
    report_path: Optional[Path]
    stopping: bool = False


class EnvLauncher:
    """Env processes for the slots of one adapter endpoint."""

    def __init__(
        self,
        endpoint: str,
        scenario: str = "hetero",
        *,
        simulator: str = "auto",
        agent_server: Optional[str] = None,
        env_timeout_s: float = DEFAULT_ENV_TIMEOUT_S,
        omnetpp_config: Optional[str] = None,
        omnetpp_runs: int = DEFAULT_OMNETPP_RUNS,
        extra_args: tuple = (),
        episodes: Optional[int] = None,
        keep_logs: bool = False,
    ):
        if simulator == "auto":
            simulator = "omnetpp" if omnetpp_available() else "rack-sim"
            log.info("launching %s envs (simulator=auto)", simulator)
        if simulator not in ("rack-sim", "omnetpp"):
            raise ValueError(f"simulator {simulator!r}: rack-sim, omnetpp or auto")
        self.endpoint = endpoint
        self.scenario = scenario
        self.simulator = simulator
        self.env_timeout_s = env_timeout_s
        self.extra_args = tuple(extra_args)
        self.episodes = episodes
        self.keep_logs = keep_logs
        self.dir = Path(tempfile.mkdtemp(prefix="malcolm-gym-"))
        self.procs: dict[int, _Proc] = {}
        self.starts: dict[int, int] = {}
        if simulator == "rack-sim":
            self.binary = find_agent_server(agent_server)
        else:
            repo = find_repo_root()
            if repo is None or not (repo / "scripts" / "omnetpp-env.sh").is_file():
                raise BridgeError("OMNeT++ envs need the repository checkout (set MALCOLM_REPO)")
            self.repo = repo
            self.omnetpp_config = omnetpp_config or omnetpp_config_for(scenario, repo)
            self.omnetpp_runs = omnetpp_runs
            self._build_omnetpp_modules()

    def _build_omnetpp_modules(self) -> None:
        """Builds our simple modules once (``scripts/omnetpp-env.sh``, as combined-run.sh does),
        so a (re)started run only pays opp_run's own start."""
        log.info("building the OMNeT++ modules (once per launcher; up to minutes the first time)")
        script = 'source "$0/scripts/omnetpp-env.sh" && malcolm_find_omnetpp >/dev/null && malcolm_build_modules "$0"'
        try:
            p = subprocess.run(["bash", "-c", script, str(self.repo)], capture_output=True, text=True,
                               timeout=OMNETPP_BUILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise BridgeError(f"building the OMNeT++ modules took over {OMNETPP_BUILD_TIMEOUT_S} s") from None
        if p.returncode != 0:
            tail = "\n".join((p.stdout + p.stderr).splitlines()[-LOG_TAIL_LINES:])
            raise BridgeError(f"building the OMNeT++ modules failed:\n{tail}")
        root = os.environ.get("OMNETPP_ROOT") or str(Path(shutil.which("opp_run")).resolve().parent.parent)
        self.omnetpp_root = Path(root)
        self.omnetpp_lib = self.repo / "omnetpp" / "build" / "libmalcolm_omnetpp.so"

    def env_id(self, slot: int) -> str:
        """The env id the current process of ``slot`` announces: a restarted process gets a new
        one, so a Hello its predecessor left in the socket is not taken for its own."""
        return f"py-{os.getpid()}-{id(self) & 0xFFFF:04x}-{slot}.{self.starts.get(slot, 0)}"

    def slot_of(self, env_id: str) -> Optional[int]:
        for slot in self.procs:
            if self.env_id(slot) == env_id:
                return slot
        return None

    def command(self, slot: int, seed: int, stride: int) -> list:
        env_id = self.env_id(slot)
        if self.simulator == "rack-sim":
            episodes = self.episodes if self.episodes is not None else ENDLESS_EPISODES
            return [
                self.binary, "env",
                "--connect", self.endpoint,
                "--scenario", self.scenario,
                "--seed", str(seed),
                "--seed-stride", str(stride),
                "--episodes", str(episodes),
                "--env-id", env_id,
                "--timeout-s", f"{self.env_timeout_s:g}",
                "--report", str(self.dir / f"env-{slot}.report.jsonl"),
                *self.extra_args,
            ]
        # scripts/omnetpp-run.sh's invocation (Cmdenv, our library and NED path, strict agent:
        # no fallback policy), with run numbers as seeds (seed-set = repetition in the ini).
        runs = self.episodes if self.episodes is not None else self.omnetpp_runs
        run_numbers = [seed + k * stride for k in range(runs)]
        return [
            str(self.omnetpp_root / "bin" / "opp_run"),
            "-u", "Cmdenv",
            "-l", str(self.omnetpp_lib),
            "-n", str(self.repo / "ned"),
            "-c", self.omnetpp_config,
            "-r", ",".join(map(str, run_numbers)),
            f"--repeat={max(run_numbers) + 1}",
            f"--result-dir={self.dir / f'omnetpp-{slot}'}",
            f'--**.coordinator.agentEndpoint="{self.endpoint}"',
            '--**.coordinator.fallbackPolicy=""',
            f'--**.coordinator.envId="{env_id}"',
            f"--**.coordinator.bridgeTimeout={self.env_timeout_s:g}s",
            *self.extra_args,
            "omnetpp.ini",
        ]

    def start(self, slot: int, seed: int, stride: int = 1) -> None:
        """(Re)starts the env process of ``slot``: episode k runs seed ``seed + k * stride``."""
        self.stop(slot)
        self.starts[slot] = self.starts.get(slot, 0) + 1
        log_path = self.dir / f"env-{slot}.log"
        report = self.dir / f"env-{slot}.report.jsonl"
        report.unlink(missing_ok=True)
        cmd = self.command(slot, seed, stride)
        log.debug("starting %s", " ".join(cmd))
        with open(log_path, "ab") as out:
            out.write(f"--- {' '.join(cmd)}\n".encode())
            out.flush()
            env = {**os.environ, "MALCOLM_LOG": os.environ.get("MALCOLM_LOG", "warn")}
            cwd = None
            if self.simulator == "omnetpp":
                cwd = self.repo / "ini"
                lib = str(self.omnetpp_root / "lib")
                env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
            popen = subprocess.Popen(
                cmd,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
                env=env,
            )
        self.procs[slot] = _Proc(popen, f"{self.simulator}[{slot}] pid {popen.pid}", log_path,
                                 report if self.simulator == "rack-sim" else None)

    def check(self) -> None:
        """Raises ``EnvExited`` when an env process ended that was not being stopped."""
        for slot, p in self.procs.items():
            if not p.stopping and p.popen.poll() is not None:
                p.stopping = True  # report once
                raise EnvExited(p.name, p.popen.returncode, self.log_tail(slot))

    def log_tail(self, slot: int, lines: int = LOG_TAIL_LINES) -> str:
        p = self.procs.get(slot)
        if p is None or not p.log_path.exists():
            return ""
        return "\n".join(p.log_path.read_text(errors="replace").splitlines()[-lines:])

    def reports(self, slot: int) -> list:
        """The env's per-episode reports so far (rack-sim only): its own metrics, the same
        figures ``agent-server eval`` prints (miss rate, goodput, latency percentiles)."""
        p = self.procs.get(slot)
        if p is None or p.report_path is None or not p.report_path.exists():
            return []
        return [json.loads(line) for line in p.report_path.read_text().splitlines() if line.strip()]

    def stop(self, slot: int) -> None:
        p = self.procs.get(slot)
        if p is None:
            return
        p.stopping = True
        if p.popen.poll() is None:
            try:
                os.killpg(p.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.popen.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.popen.wait(STOP_TIMEOUT_S)

    def kill(self, slot: int) -> None:
        """SIGKILL, without marking the process as stopping (tests of a vanished env)."""
        os.kill(self.procs[slot].popen.pid, signal.SIGKILL)

    def close(self) -> None:
        for slot in list(self.procs):
            self.stop(slot)
        if not self.keep_logs:
            shutil.rmtree(self.dir, ignore_errors=True)

    def wait_exit(self, slot: int, timeout_s: float) -> Optional[int]:
        """Waits (bounded) for the process to end by itself; its exit status or None."""
        p = self.procs[slot]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if p.popen.poll() is not None:
                p.stopping = True
                return p.popen.returncode
            time.sleep(0.02)
        return None
