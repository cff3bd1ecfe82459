"""A CeleryExecutor cluster of Airflow on this machine, for the tests: one control host and two
worker hosts, each in a network namespace of its own, sharing nothing but PostgreSQL, Redis
and S3.

- control (its own address, hostname ``control``): PostgreSQL 15 and Redis (Debian's
  binaries, throwaway instances under a temporary folder), ``airflow api-server``,
  ``scheduler`` and ``dag-processor``;
- ``w1``, ``w2``: one ``airflow celery worker`` each, with its own address, hostname,
  AIRFLOW_HOME and its own copy of the DAGs folder, mounted at the env file's DAGS_FOLDER in a
  mount namespace of its own;
- S3: moto's standalone server in the test process's namespace, reached by every host as
  ``minio:9000`` through a ``TcpProxy`` on the bridge, so that the test can stop the store
  for a while without losing its contents.

Every Airflow process runs with ``docker/airflow.env`` as it is (the names ``postgres``,
``redis``, ``minio``, ``airflow-apiserver`` are mapped by each namespace's hosts file), plus
the settings that file leaves unset, tuned for a short test (``TEST_SETTINGS``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import fsspec

from airflow_parallel_run.results import RESULTS_DIR

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "airflow"))
from airflow_runs import AIRFLOW, REPO_DAGS, RestApi, wait_for  # noqa: E402
from support import TcpProxy, start_moto  # noqa: E402

HERE = Path(__file__).resolve().parent
ENV_FILE = REPO_DAGS.parent / "docker" / "airflow.env"
SCRIPTS = (HERE.parent / "airflow" / "scripts" / "behave.py", HERE / "scripts" / "marked.py",
           REPO_DAGS.parent / "bench" / "scripts" / "cpu_work.py")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
DAGS_MOUNT = "/opt/airflow/dags"
WORKERS = ("w1", "w2")
BUCKET = "parallel-run"
CONCURRENCY = 2  # task slots per worker host: 4 node tasks cannot all land on one host

# Settings the env file leaves unset, tuned for a test of a few minutes (never one it sets).
TEST_SETTINGS = {
    "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
    "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
    # a store stopped for good is given up on sooner; a 10 s outage is still waited for
    "PARALLEL_RUN_STORE_RETRY_SECONDS": "20",
}


def read_env_file(path: Path = ENV_FILE) -> dict[str, str]:
    """``KEY=VALUE`` lines as Docker reads an env file: the value verbatim, ``#`` lines skipped."""
    env = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value
    return env


def sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({done.returncode}): "
                             f"{(done.stderr or done.stdout).strip()}")
    return done


class Network:
    """A bridge with this machine's end at ``.1`` and one namespace per host after it, each
    with a hosts file that maps the env file's service names to the control host. Names carry
    the creating process's id: a leftover of a killed run never clashes with a new one."""

    def __init__(self, hosts: tuple[str, ...]) -> None:
        self.tag = str(os.getpid())
        self.bridge = f"prtbr{self.tag}"
        subnet = self._free_subnet()
        self.gateway = str(subnet[1])
        self.address = {host: str(subnet[i + 2]) for i, host in enumerate(hosts)}
        self.namespace = {host: f"prt{self.tag}{host}" for host in hosts}

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        used = sh("ip", "-4", "addr").stdout
        for third in range(os.getpid() % 200, 256):
            if f"10.254.{third}." not in used:
                return ipaddress.ip_network(f"10.254.{third}.0/24")
        raise AssertionError("no free 10.254.x.0/24 subnet for the cluster's bridge")

    def create(self) -> None:
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
        except AssertionError as exc:
            raise AssertionError(f"the cluster test needs network namespaces and a bridge "
                                 f"(root, iproute2), and cannot make them here: {exc}") from None
        sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        sh("ip", "link", "set", self.bridge, "up")
        names = {"minio": self.gateway}
        hosts_lines = ["127.0.0.1 localhost", f"{self.gateway} minio"]
        for host, address in self.address.items():
            extra = " postgres redis airflow-apiserver" if host == "control" else ""
            hosts_lines.append(f"{address} {host}{extra}")
            names[host] = address
        for i, (host, namespace) in enumerate(self.namespace.items()):
            sh("ip", "netns", "add", namespace)
            outer, inner = f"vh{self.tag}{i}", f"vn{self.tag}{i}"
            sh("ip", "link", "add", outer, "type", "veth", "peer", "name", inner)
            sh("ip", "link", "set", inner, "netns", namespace)
            sh("ip", "link", "set", outer, "master", self.bridge, "up")
            sh("ip", "-n", namespace, "addr", "add", f"{self.address[host]}/24", "dev", inner)
            sh("ip", "-n", namespace, "link", "set", inner, "up")
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
            folder = Path("/etc/netns") / namespace
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "hosts").write_text("\n".join(hosts_lines) + "\n")

    def popen(self, host: str, argv: list[str], log: Path, env: dict[str, str],
              dags: Path | None = None) -> subprocess.Popen:
        """``argv`` on ``host``: its namespace, its hostname, its DAGs folder (if any)."""
        script = 'hostname "$0" && { [ -z "$1" ] || mount --bind "$1" ' + DAGS_MOUNT + \
                 '; } && shift && exec "$@"'
        command = ["ip", "netns", "exec", self.namespace[host], "unshare", "--uts", "--mount",
                   "--propagation", "private", "sh", "-c", script, host, str(dags or ""), *argv]
        with open(log, "a") as out:
            return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)

    def pids(self, host: str) -> list[int]:
        found = sh("ip", "netns", "pids", self.namespace[host], check=False).stdout
        return [int(pid) for pid in found.split()]

    def kill(self, host: str) -> None:
        """SIGKILL every process of ``host``, until none is left."""
        for _ in range(50):
            pids = self.pids(host)
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)

    def destroy(self) -> None:
        for host, namespace in self.namespace.items():
            with contextlib.suppress(Exception):
                self.kill(host)
            sh("ip", "netns", "del", namespace, check=False)
            shutil.rmtree(Path("/etc/netns") / namespace, ignore_errors=True)
        sh("ip", "link", "del", self.bridge, check=False)

    @staticmethod
    def sweep_leftovers() -> None:
        """Namespaces and bridges of earlier runs whose process is gone (a killed run)."""
        for namespace in sh("ip", "netns", "list", check=False).stdout.split():
            found = re.fullmatch(r"prt(\d+)(control|w\d)", namespace)
            if found and not Path(f"/proc/{found.group(1)}").exists():
                for pid in sh("ip", "netns", "pids", namespace, check=False).stdout.split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                sh("ip", "netns", "del", namespace, check=False)
                shutil.rmtree(Path("/etc/netns") / namespace, ignore_errors=True)
        for bridge in re.findall(r"\d+: (prtbr(\d+))[:@]", sh("ip", "link").stdout):
            if not Path(f"/proc/{bridge[1]}").exists():
                sh("ip", "link", "del", bridge[0], check=False)


class Cluster:
    """The hosts, their services, the REST API (``rest``) and the store (``s3``)."""

    def __init__(self, root: Path, concurrency: int = CONCURRENCY) -> None:
        self.root = root
        self.concurrency = concurrency  # task slots of each worker host
        self.logs = root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.network = Network(("control", *WORKERS))
        self.env_file = read_env_file()
        self.processes: dict[str, subprocess.Popen] = {}
        self.moto: subprocess.Popen | None = None
        self.proxy: TcpProxy | None = None
        self.pg_folder = Path(tempfile.mkdtemp(prefix="prt-cluster-pg-"))
        self.rest = RestApi(f"http://{self.network.address['control']}:8080")
        self.s3: fsspec.AbstractFileSystem | None = None  # the store, as the test reaches it
        self.s3_options: dict = {}

    def home(self, host: str) -> Path:
        return self.root / host / "home"

    def env(self, host: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
        return {**base, **self.env_file, **TEST_SETTINGS, "AIRFLOW_HOME": str(self.home(host))}

    def start(self) -> None:
        for binary in (PG_BIN / "initdb", Path(shutil.which("redis-server") or "/nonexistent")):
            assert binary.exists(), f"{binary} is missing: `make system-deps` installs it"
        assert not set(TEST_SETTINGS) & set(self.env_file), "the test overrides the env file"
        Network.sweep_leftovers()
        # the S3 proxy in this process holds two descriptors per connection of every task
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
        Path(DAGS_MOUNT).mkdir(parents=True, exist_ok=True)
        self.network.create()
        self._start_store()
        for host in ("control", *WORKERS):  # a copy of dags/ each: no folder is shared
            self.home(host).mkdir(parents=True)
            dags = self.root / host / "dags"
            shutil.copytree(REPO_DAGS, dags)
            shutil.copy(HERE / "dags" / "prt_cluster.py", dags)
            (dags / "scripts" / "cluster").mkdir()
            for script in SCRIPTS:
                shutil.copy(script, dags / "scripts" / "cluster")
        self._start_postgres()
        self._start("redis", "control", ["redis-server", "--bind", "0.0.0.0", "--port", "6379",
                                          "--save", "", "--appendonly", "no",
                                          "--protected-mode", "no", "--dir", str(self.root)])
        migrate = self._start("migrate", "control", [AIRFLOW, "db", "migrate"], airflow=True)
        assert migrate.wait(timeout=300) == 0, self.log_tails()
        self._start("api-server", "control", [AIRFLOW, "api-server", "--workers", "1"],
                    airflow=True)
        self._start("scheduler", "control", [AIRFLOW, "scheduler"], airflow=True)
        self._start("dag-processor", "control", [AIRFLOW, "dag-processor"], airflow=True)
        for host in WORKERS:
            self._start(f"worker-{host}", host, [AIRFLOW, "celery", "worker", "--concurrency",
                                                 str(self.concurrency)], airflow=True)
        self._wait_ready()

    def _start(self, name: str, host: str, argv: list[str], airflow: bool = False,
               user: str | None = None) -> subprocess.Popen:
        if user:  # PostgreSQL refuses to run as root
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *argv]
        process = self.network.popen(
            host, argv, self.logs / f"{name}.log", self.env(host) if airflow else dict(os.environ),
            dags=self.root / host / "dags" if airflow else None)
        self.processes[name] = process
        return process

    def restart_worker(self, host: str) -> None:
        """A new Celery worker on ``host`` (after ``network.kill``), once it is ready."""
        log = self.logs / f"worker-{host}.log"
        log.rename(log.with_suffix(f".{time.monotonic_ns()}.old"))
        self._start(f"worker-{host}", host, [AIRFLOW, "celery", "worker", "--concurrency",
                                             str(self.concurrency)], airflow=True)
        wait_for(f"celery worker on {host}", lambda: " ready." in log.read_text(), 120,
                 self.logs)

    def _start_store(self) -> None:
        self.moto, port = start_moto()
        self.proxy = TcpProxy(port, host=self.network.gateway, port=9000)
        connection = json.loads(self.env_file["AIRFLOW_CONN_PARALLEL_RUN_S3"])["extra"]
        self.s3_options = {"key": connection["key"], "secret": connection["secret"],
                           "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}",
                                             "region_name": "us-east-1"}}
        self.s3 = fsspec.filesystem("s3", skip_instance_cache=True, **self.s3_options)
        import boto3  # s3fs's mkdir asks moto for a location constraint it refuses

        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                     aws_access_key_id=connection["key"],
                     aws_secret_access_key=connection["secret"]).create_bucket(Bucket=BUCKET)

    def _start_postgres(self) -> None:
        user = "postgres" if _user_exists("postgres") else "nobody"
        data = self.pg_folder / "data"
        shutil.chown(self.pg_folder, user, user)
        sh("setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
           str(PG_BIN / "initdb"), "-D", str(data), "-U", "airflow", "--auth=trust", "-E",
           "UTF8", timeout=120)
        with open(data / "pg_hba.conf", "a") as hba:
            hba.write("host all all 0.0.0.0/0 trust\n")
        self._start("postgres", "control", [
            str(PG_BIN / "postgres"), "-D", str(data), "-k", str(self.pg_folder),
            "-c", "listen_addresses=*", "-c", "fsync=off", "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off", "-c", "max_connections=300"], user=user)
        address = self.network.address["control"]
        wait_for("postgres", lambda: socket.create_connection((address, 5432), 1).close() or True,
                 60, self.logs)
        sh(str(PG_BIN / "createdb"), "-h", address, "-U", "airflow", "airflow")

    def _wait_ready(self) -> None:
        wait_for("api-server", lambda: self.rest.api("GET", "monitor/health"), 180, self.logs)
        passwords = self.home("control") / "simple_auth_manager_passwords.json.generated"
        users = json.loads(passwords.read_text())
        self.rest = RestApi.login(self.rest.url, "admin", users["admin"])
        for dag_id in ("digit_identification", "tabular_scoring", "prt_cluster",
                       "prt_cluster_blink", "prt_cluster_down", "prt_cluster_locked",
                       "prt_cluster_cpu"):
            wait_for(f"DAG {dag_id}", lambda d=dag_id: self.rest.api("GET", f"dags/{d}"), 120,
                     self.logs)
        for host in WORKERS:
            log = self.logs / f"worker-{host}.log"
            wait_for(f"celery worker on {host}", lambda p=log: " ready." in p.read_text(), 120,
                     self.logs)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.network.destroy()
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.kill()
                process.wait(timeout=10)
        if self.proxy:
            self.proxy.close()
        if self.moto:
            self.moto.kill()
            self.moto.wait()
        shutil.rmtree(self.pg_folder, ignore_errors=True)

    def task_logs(self, dag_id: str, run_id: str, task_id: str) -> list[Path]:
        """The log files of a run's task (every try, every map index), on whichever hosts
        ran it."""
        return sorted(path for host in WORKERS for path in (self.home(host) / "logs").rglob("*.log")
                      if f"/dag_id={dag_id}/run_id={run_id}/task_id={task_id}/" in str(path))

    def log_files(self) -> list[Path]:
        """Every log file of the cluster: the services' and each host's ``AIRFLOW_HOME/logs``."""
        return [*self.logs.glob("*"),
                *(p for host in ("control", *WORKERS) for p in (self.home(host) / "logs").rglob("*")
                  if p.is_file())]

    def log_tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}"
                         for p in sorted(self.logs.glob("*.log")))

    def data(self, variable: str) -> str:
        """Where an example DAG's data is on the store (``bucket/key``): the env file's
        ``variable``, an ``s3://conn_id@bucket/key`` URL."""
        return self.env_file[variable].removeprefix("s3://").partition("@")[2]

    def put_files(self, folder: str, texts: list[str]) -> list[str]:
        """``f000.txt``... with the given texts under ``cluster/<folder>/`` of the bucket (where
        the prt_cluster DAGs read); the output lines that behave.py makes of them."""
        self.s3.pipe({f"{BUCKET}/cluster/{folder}/f{i:03d}.txt": f"{text}\n".encode()
                      for i, text in enumerate(texts)})
        return [f"f{i:03d}.txt: {text}" for i, text in enumerate(texts)]

    def records(self, output: str) -> set[int]:
        """The mini-batches of a run that have a record on the store."""
        self.s3.invalidate_cache()  # s3fs keeps listings; the run adds records meanwhile
        found = self.s3.find(f"{output}/{RESULTS_DIR}")
        return {int(Path(p).stem) for p in found if p.endswith(".rec")
                and not Path(p).name.startswith(".")}

    def output(self, dag_id: str, step: str, run_id: str) -> str:
        """The run's output folder on the store (``bucket/key``)."""
        root = self.env_file["AIRFLOW__PARALLEL_RUN__OUTPUT_ROOT"].removeprefix("s3://")
        return f"{root}/{dag_id}/{step}/{re.sub(r'[^A-Za-z0-9._-]', '_', run_id)}"


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
