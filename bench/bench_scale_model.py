"""Benchmark: a scale model on paper, from unit costs measured on this machine.

Four measurements, each a small real run, then the model they give for big jobs:

1. ``airflow`` - Airflow's cost per job: a small step (40 files, 8 mini-batches) run with
   ``airflow dags test`` (SQLite) at node_count 1, 2 and 4; the rows each run added to every
   table of the metadata database and the XCom bytes per task, fitted as fixed + per node.
2. ``s3`` - S3 requests per mini-batch: ``parallel-run`` with input and output on moto's S3
   server behind a counting proxy (scale_proxy.py), 50 and 200 mini-batches (and 200 on 2
   nodes), fitted as fixed + per mini-batch + per node; the objects left in the output.
3. ``listing`` - planning time and peak memory for 1M and 10M files from a synthetic listing
   (no files: generated paths, sizes and etags), each in a fresh process (peak RSS: VmHWM).
4. ``parquet`` - the planner's cost per Parquet footer and per row group, on local samples of
   200 files (4 and 16 row groups, 20 columns), and the requests and bytes per footer on S3
   (50 of those files, and one file of 77 MB); extrapolated to 1 TB.

Counts (rows, bytes, requests, objects, MB) are the results; times are printed with the
load average, as the machine may be shared.

    .venv/bin/python bench/bench_scale_model.py [airflow] [s3] [listing] [parquet]

Data and outputs go under ``BENCH_DATA`` (default /tmp/bench-data), never the repository.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchlib import DATA, PARALLEL_RUN, PYTHON, SCRIPTS, file_set, fresh_dir, machine

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "airflow")]

from airflow_runs import AirflowHome  # noqa: E402 - the tests' own Airflow set-up
from scale_proxy import CountingProxy, area_of  # noqa: E402
from support import start_moto  # noqa: E402 - the tests' own moto server

MODEL_NODES = (1, 16, 64, 256, 1024, 2048)
S3_WRITES_PER_PREFIX = 3_500  # PUT/COPY/POST/DELETE per second per prefix (AWS's figure)
S3_READS_PER_PREFIX = 5_500  # GET/HEAD per second per prefix


def load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def fit(small: float, big: float, x_small: float, x_big: float) -> tuple[float, float]:
    """(fixed, per unit) of the line through two measurements."""
    per = (big - small) / (x_big - x_small)
    return small - per * x_small, per


def title(text: str) -> None:
    print(f"\n== {text} ({load()})", flush=True)


# -- 1. Airflow: task instances, metadata-DB rows and XCom bytes per job -------------------------

DAG_ID = "scale_model"
NODE_COUNTS = (1, 2, 4)
DAG_FILE = '''
from airflow.sdk import DAG, Param
from airflow_parallel_run import FileDataset
from airflow_parallel_run.airflow import ConfigTemplate, ParallelRunOperator

with DAG({dag_id!r}, schedule=None, params={{"node_count": Param(1, type="integer")}}):
    ParallelRunOperator(
        task_id="step",
        parallel_run_config=ConfigTemplate(
            entry_script={script!r}, mini_batch_size=5,
            node_count="{{{{ params.node_count }}}}", process_count_per_node=1),
        inputs=FileDataset.from_files({folder!r}),
        allow_reuse=False,
    )
'''
SETTINGS = '''
from airflow.configuration import conf
print(conf.getint("core", "max_map_length"), conf.getint("core", "parallelism"),
      conf.getint("core", "max_active_tasks_per_dag"))
'''


def table_rows(db_path: Path) -> Counter[str]:
    with sqlite3.connect(db_path) as db:
        tables = [r[0] for r in db.execute("select name from sqlite_master where type='table'")]
        return Counter({t: db.execute(f'select count(*) from "{t}"').fetchone()[0]
                        for t in tables})


def xcom_bytes(db_path: Path, run_id: str) -> dict[str, int]:
    """XCom bytes per task (mapped instances summed) and key."""
    sizes: Counter[str] = Counter()
    with sqlite3.connect(db_path) as db:
        for task, key, size in db.execute(
                "select task_id, key, length(value) from xcom where dag_id = ? and run_id = ?",
                (DAG_ID, run_id)):
            sizes[f"{task} {key}"] += size or 0
    return dict(sizes)


@dataclass
class AirflowRun:
    node_count: int
    rows: Counter[str]
    xcom: dict[str, int]
    task_instances: int
    seconds: float


def airflow_settings(home: AirflowHome) -> tuple[int, int, int]:
    done = subprocess.run([PYTHON, "-c", SETTINGS], env=home.env(), capture_output=True,
                          text=True, check=True)
    first, second, third = (int(v) for v in done.stdout.split()[-3:])
    return first, second, third


def measure_airflow() -> dict[str, Any]:
    title("1. Airflow: rows and XCom bytes per job (airflow dags test, SQLite)")
    folder = file_set("scale-40", 40, lambda i: f"value {i}".encode())
    root = fresh_dir("scale-airflow")
    home = AirflowHome(root / "home", root / "dags")
    home.dags_folder.mkdir()
    (home.dags_folder / f"{DAG_ID}.py").write_text(DAG_FILE.format(
        dag_id=DAG_ID, script=str(SCRIPTS / "read_lines.py"), folder=str(folder)))
    home.migrate()
    db = home.path / "airflow.db"
    home.dags_test(DAG_ID, folder, {"node_count": 1}, root / "out")  # the DAG's own rows
    runs = []
    for n in NODE_COUNTS:
        before = table_rows(db)
        started = time.perf_counter()
        run = home.dags_test(DAG_ID, folder, {"node_count": n}, root / "out")
        seconds = time.perf_counter() - started
        assert run.state == "success", run.log[-3000:]
        added = table_rows(db)
        added.subtract(before)
        runs.append(AirflowRun(n, +added, xcom_bytes(db, run.run_id), len(run.tasks), seconds))
        print(f"  node_count {n}: {len(run.tasks)} task instances, "
              f"{sum(runs[-1].rows.values())} rows, {sum(runs[-1].xcom.values())} XCom bytes, "
              f"{seconds:.1f} s", flush=True)
    return airflow_model(runs, airflow_settings(home))


def airflow_model(runs: list[AirflowRun], settings: tuple[int, int, int]) -> dict[str, Any]:
    one, two, four = runs
    tables = sorted(set().union(*(r.rows for r in runs)))
    print(f"\n  rows added per run, by table (node_count {NODE_COUNTS}) -> fixed + per node")
    fitted = {}
    for table in tables:
        counts = [r.rows[table] for r in runs]
        fixed, per = fit(counts[0], counts[2], 1, 4)
        fitted[table] = (fixed, per)
        check = "" if abs(fixed + 2 * per - counts[1]) < 0.5 else "  (not linear!)"
        print(f"    {table:<34} {counts}  ->  {fixed:g} + {per:g} x nodes{check}")
    rows = fit(sum(one.rows.values()), sum(four.rows.values()), 1, 4)
    keys = sorted(set(one.xcom) | set(four.xcom))
    print("\n  XCom bytes per task and key (node_count 1, 2, 4)")
    for key in keys:
        print(f"    {key:<34} {[r.xcom.get(key, 0) for r in runs]}")
    xcom = fit(sum(one.xcom.values()), sum(four.xcom.values()), 1, 4)
    print(f"\n  model: task instances = nodes + 2; rows = {rows[0]:g} + {rows[1]:g} x nodes; "
          f"XCom bytes = {xcom[0]:.0f} + {xcom[1]:.0f} x nodes")
    print(f"  (two-node run: {sum(two.rows.values())} rows, predicted {rows[0] + 2 * rows[1]:g})")
    max_map, parallelism, per_dag = settings
    print(f"  this Airflow's defaults: [core] max_map_length {max_map}, parallelism "
          f"{parallelism}, max_active_tasks_per_dag {per_dag}")
    return {"rows": rows, "xcom": xcom, "tables": fitted, "max_map_length": max_map,
            "parallelism": parallelism, "max_active_tasks_per_dag": per_dag,
            "seconds": [r.seconds for r in runs]}


# -- 2. S3: requests per mini-batch and state objects ---------------------------------------------

BUCKET = "scale"
S3_RUNS = ((50, 1), (200, 1), (200, 2))  # (mini-batches, nodes); one file per mini-batch
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1"}


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing", region_name="us-east-1")


def objects(client: Any, prefix: str) -> Iterator[dict[str, Any]]:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        yield from page.get("Contents", [])


def run_on_s3(proxy: CountingProxy, client: Any, count: int, nodes: int) -> dict[str, Any]:
    source, out = f"in-{count}", f"out-{count}-{nodes}"
    for i in range(count):
        client.put_object(Bucket=BUCKET, Key=f"{source}/f{i:04d}.txt", Body=f"value {i}".encode())
    proxy.take()
    started = time.perf_counter()
    subprocess.run([PARALLEL_RUN, str(SCRIPTS / "read_lines.py"), "--input",
                    f"s3://{BUCKET}/{source}", "--output", f"s3://{BUCKET}/{out}",
                    "--mini-batch-size", "1", "--node-count", str(nodes),
                    "--process-count-per-node", "2", "--quiet"],
                   env={**os.environ, **S3_ENV, "AWS_ENDPOINT_URL": proxy.endpoint},
                   check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    requests = proxy.take()
    left: Counter[str] = Counter()
    left_bytes: Counter[str] = Counter()
    for obj in objects(client, f"{out}/"):
        area = area_of(obj["Key"])
        left[area] += 1
        left_bytes[area] += obj["Size"]
    print(f"  {count} mini-batches on {nodes} node(s): {sum(requests.values())} requests, "
          f"{sum(left.values())} objects left, {seconds:.1f} s", flush=True)
    return {"requests": requests, "objects": left, "bytes": left_bytes}


def listing_entry_bytes(endpoint: str, prefix: str) -> float:
    """Python heap bytes per object of an fsspec S3 listing with details, as the planner
    lists a remote folder (inputs/files.py _remote_matches: ``fs.find(detail=True)``)."""
    import tracemalloc

    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True, use_listings_cache=False,
                           key="testing", secret="testing",
                           client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"})
    fs.find(f"{BUCKET}/{prefix}", detail=True)  # warm the client (its own allocations)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    found = fs.find(f"{BUCKET}/{prefix}", detail=True)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held / len(found)


def measure_s3() -> dict[str, Any]:
    title("2. S3: requests per mini-batch and state objects (parallel-run, moto + counting proxy)")
    server, port = start_moto()
    proxy = CountingProxy(port)
    try:
        client = s3_client(f"http://127.0.0.1:{port}")
        client.create_bucket(Bucket=BUCKET)
        results = {key: run_on_s3(proxy, client, *key) for key in S3_RUNS}
        entry = listing_entry_bytes(f"http://127.0.0.1:{port}", "in-200")
    finally:
        proxy.shutdown()
        server.terminate()
        server.wait()
    return s3_model(results, entry)


def _fit_counts(results: dict, field: str) -> dict[Any, tuple[float, float, float]]:
    """Per key of ``field``: (fixed, per mini-batch, per extra node)."""
    small, big, wide = (results[k][field] for k in S3_RUNS)
    fitted = {}
    for key in sorted(set(small) | set(big) | set(wide)):
        fixed, per = fit(small[key], big[key], 50, 200)
        fitted[key] = (fixed, per, wide[key] - big[key])
    return fitted


def _print_fits(results: dict, field: str, what: str) -> dict[Any, tuple[float, float, float]]:
    fitted = _fit_counts(results, field)
    print(f"\n  {what}: 50 / 200 mini-batches on 1 node, 200 on 2 nodes -> fixed + per "
          "mini-batch; + per extra node")
    for key, (fixed, per, node) in fitted.items():
        label = " ".join(f"{part:<6}" for part in key) if isinstance(key, tuple) else key
        counts = [results[k][field][key] for k in S3_RUNS]
        size = f" ({[results[k]['bytes'][key] for k in S3_RUNS]} bytes)" if field == "objects" else ""
        print(f"    {label:<39} {counts}{size}  ->  {fixed:g} + {per:.3g} x mb; {node:+g} per node")
    return fitted


def _is_write(method: str) -> bool:
    return method in ("PUT", "POST", "DELETE", "COPY")


def s3_model(results: dict, entry_bytes: float) -> dict[str, Any]:
    requests = _print_fits(results, "requests", "requests (method, area)")
    objs = _print_fits(results, "objects", "objects left in the output (area)")
    totals = {}
    for label, writing in (("writes (PUT/POST/DELETE)", True), ("reads (GET/HEAD/LIST)", False)):
        parts = [v for k, v in requests.items() if _is_write(k[0]) == writing]
        totals[label] = tuple(sum(v[i] for v in parts) for i in range(3))
        print(f"  {label}: {totals[label][0]:g} + "
              f"{totals[label][1]:.3g} x mini-batches, {totals[label][2]:+g} per extra node")
    state = sum(v[1] for k, v in objs.items() if k.startswith(".parallel_run"))
    print(f"  state objects per mini-batch (.parallel_run/): {state:.3g}; an fsspec listing "
          f"entry with details holds {entry_bytes:,.0f} bytes of Python heap")
    per_prefix: dict[str, list[float]] = {}
    for (method, area), (_, per, _) in requests.items():
        prefix = area if area in ("input", ".parallel_run/results") else "rest of the output"
        per_prefix.setdefault(prefix, [0.0, 0.0])[0 if _is_write(method) else 1] += per
    return {"totals": totals, "state_per_mb": state, "entry_bytes": entry_bytes,
            "per_prefix": per_prefix}


# -- 3. planning 1M and 10M files from a synthetic listing ----------------------------------------

LISTING_CASES = ((1_000_000, 10), (1_000_000, 1000), (10_000_000, 1000))
SYNTHETIC_CHUNK = 10_000  # files per listed chunk, as a local folder is listed


def synthetic_dataset(count: int, one_list: bool) -> Any:
    """A FileDataset whose listing is ``count`` generated S3-like paths with sizes and etags.

    ``one_list``: the whole listing in one chunk, as a remote folder is listed today
    (inputs/files.py iter_chunks); else chunks of SYNTHETIC_CHUNK, as a local folder is."""
    from airflow_parallel_run import FileDataset
    from airflow_parallel_run.inputs.files import InputItem

    class SyntheticFiles(FileDataset):
        def iter_chunks(self, stats: bool = True) -> Iterator[list[Any]]:
            step = count if one_list else SYNTHETIC_CHUNK
            for start in range(0, count, step):
                yield [InputItem(f"s3://bucket/images/2026/11/part-{i // 10_000:05d}/"
                                 f"img-{i:09d}.jpg", 50_000 + i % 1000,
                                 f'"{i:032x}"') for i in range(start, min(count, start + step))]

    return SyntheticFiles(paths=["s3://bucket/images/"], name="input")


def peak_mb() -> float:
    """This process's peak resident set. Not getrusage's ru_maxrss: on Linux a child starts
    with its parent's high-water mark, which would hide a probe's own peak under the
    benchmark's; VmHWM belongs to the address space, made anew by exec."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def listing_probe(count: int, size: int, one_list: bool, output: str) -> None:
    """Runs in a fresh process: plan the synthetic listing, print what it cost."""
    from airflow_parallel_run import ParallelRunConfig
    from airflow_parallel_run.engine.job import Job

    floor = peak_mb()
    config = ParallelRunConfig(entry_script=str(SCRIPTS / "trivial.py"), mini_batch_size=size)
    job = Job(config, [synthetic_dataset(count, one_list)], output)
    started = time.perf_counter()
    plan = job.plan()
    seconds = time.perf_counter() - started
    plan_bytes = sum(p.stat().st_size for p in Path(output, ".parallel_run").rglob("*"))
    print(json.dumps({"peak_mb": peak_mb(), "floor_mb": floor, "seconds": seconds,
                      "mini_batches": plan.mini_batch_count, "plan_mb": plan_bytes / 2**20}))


def plan_in_subprocess(*args: str) -> dict[str, Any]:
    output = fresh_dir("scale-plan")
    try:
        done = subprocess.run([PYTHON, __file__, "--probe", *args, str(output)],
                              capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(done.stderr[-2000:])
        return json.loads(done.stdout.splitlines()[-1])
    finally:
        shutil.rmtree(output, ignore_errors=True)


def measure_listing() -> dict[Any, dict[str, Any]]:
    title("3. Planning 1M and 10M files from a synthetic listing (fresh process each)")
    found = {}
    cases = [(c, s, False) for c, s in LISTING_CASES] + [(1_000_000, 1000, True)]
    for count, size, one_list in cases:
        got = plan_in_subprocess("listing", str(count), str(size), str(int(one_list)))
        found[(count, size, one_list)] = got
        how = "one list (as a remote folder is listed)" if one_list else "chunks of 10,000"
        print(f"  {count:>10,} files, mini_batch_size {size:>4}, {how}: "
              f"{got['mini_batches']:,} mini-batches, plan {got['plan_mb']:.0f} MB, peak RSS "
              f"{got['peak_mb']:.0f} MB (floor {got['floor_mb']:.0f} MB), {got['seconds']:.1f} s "
              f"({load()})", flush=True)
    return found


# -- 4. 1 TB of Parquet: cost per footer and per row group ----------------------------------------

PARQUET_FILES = 200
PARQUET_COLUMNS = 20
ROWS_PER_GROUP = 200
PARQUET_REPEATS = 3
S3_LATENCY = 0.03  # seconds per GET of a footer from S3 in the same region: an assumption
ASSUMED = (("8,192 files of 128 MB, 1 row group each", 8192, 1),
           ("1,024 files of 1 GB, 8 row groups of 128 MB", 1024, 8))


def parquet_sample(groups: int) -> Path:
    """DATA/scale-parquet-<groups>rg: PARQUET_FILES files of ``groups`` row groups (once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = DATA / f"scale-parquet-{groups}rg"
    ready = DATA / f"scale-parquet-{groups}rg.ready"
    if not ready.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        rows = groups * ROWS_PER_GROUP
        table = pa.table({f"c{c:02d}": pa.array(range(c, c + rows), pa.int64())
                          for c in range(PARQUET_COLUMNS)})
        for i in range(PARQUET_FILES):
            pq.write_table(table, folder / f"part-{i:05d}.parquet", row_group_size=ROWS_PER_GROUP)
        ready.touch()
    return folder


def parquet_probe(folder: str, output: str) -> None:
    """Runs in a fresh process: plan a Parquet folder at 1 KB per mini-batch (a row group
    each), print what it cost."""
    from airflow_parallel_run import ParallelRunConfig, TabularDataset
    from airflow_parallel_run.engine.job import Job

    config = ParallelRunConfig(entry_script=str(SCRIPTS / "trivial.py"), mini_batch_size="1KB")
    storage = {"key": "testing", "secret": "testing",
               "client_kwargs": {"endpoint_url": os.environ.get("AWS_ENDPOINT_URL"),
                                 "region_name": "us-east-1"}} if "://" in folder else None
    job = Job(config, [TabularDataset.from_parquet_files(folder, storage_options=storage)], output)
    seconds = float("inf")
    # the same plan again (it resumes): the fastest counts; once on S3, where requests count
    for _ in range(1 if storage else PARQUET_REPEATS):
        started = time.perf_counter()
        plan = job.plan()
        seconds = min(seconds, time.perf_counter() - started)
    plan_bytes = sum(p.stat().st_size for p in Path(output, ".parallel_run", "plan").rglob("*"))
    print(json.dumps({"peak_mb": peak_mb(), "seconds": seconds, "mini_batches": plan.mini_batch_count,
                      "plan_bytes": plan_bytes}))


def big_parquet() -> Path:
    """DATA/scale-big.parquet: one file of 77 MB (8 uncompressed random int64 columns,
    8 row groups of 125,000 rows), made once: what a footer read costs in a big file."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = DATA / "scale-big.parquet"
    if not path.exists():
        numbers = np.random.default_rng(0)
        table = pa.table({f"c{c}": numbers.integers(0, 2**62, 1_000_000) for c in range(8)})
        pq.write_table(table, f"{path}.tmp", row_group_size=125_000, compression="none")
        os.replace(f"{path}.tmp", path)
    return path


def parquet_on_s3(paths: list[Path]) -> tuple[Counter[tuple[str, str]], Counter[str]]:
    """Plan ``paths`` from moto through the counting proxy: requests and bytes read."""
    server, port = start_moto()
    proxy = CountingProxy(port)
    try:
        client = s3_client(f"http://127.0.0.1:{port}")
        client.create_bucket(Bucket=BUCKET)
        for path in paths:
            client.upload_file(str(path), BUCKET, f"in-parquet/{path.name}")
        os.environ.update({**S3_ENV, "AWS_ENDPOINT_URL": proxy.endpoint})
        proxy.take()
        plan_in_subprocess("parquet", f"s3://{BUCKET}/in-parquet")
        received = proxy.take_received()
        return proxy.take(), received
    finally:
        for name in (*S3_ENV, "AWS_ENDPOINT_URL"):
            os.environ.pop(name, None)
        proxy.shutdown()
        server.terminate()
        server.wait()


def measure_parquet() -> dict[str, Any]:
    import pyarrow.parquet as pq

    title(f"4. Parquet: planner cost per footer and per row group ({PARQUET_FILES} files, "
          f"{PARQUET_COLUMNS} int64 columns)")
    got = {}
    for groups in (4, 16):
        folder = parquet_sample(groups)
        got[groups] = plan_in_subprocess("parquet", str(folder))
        footer = pq.ParquetFile(folder / "part-00000.parquet").metadata.serialized_size
        got[groups]["footer_bytes"] = footer
        print(f"  {groups:>2} row groups per file: {got[groups]['mini_batches']:,} mini-batches, "
              f"plan {got[groups]['plan_bytes']:,} bytes, peak RSS {got[groups]['peak_mb']:.0f} "
              f"MB, {got[groups]['seconds']:.2f} s; footer {footer:,} bytes per file", flush=True)
    requests, received = parquet_on_s3(sorted(parquet_sample(4).iterdir())[:50])
    print(f"  on S3, 50 of the files of 4 row groups: {dict(requests)}, "
          f"{received['input']:,} bytes read")
    big = big_parquet()
    big_requests, big_received = parquet_on_s3([big])
    print(f"  on S3, one file of {big.stat().st_size / 2**20:.0f} MB in 8 row groups: "
          f"{dict(big_requests)}, {big_received['input']:,} bytes read")
    return parquet_model(got, requests, 50)


def parquet_model(got: dict[int, dict[str, Any]], requests: Counter, files: int) -> dict[str, Any]:
    groups4, groups16 = got[4], got[16]
    per_group = (groups16["seconds"] - groups4["seconds"]) / (PARQUET_FILES * 12)
    per_file = groups4["seconds"] / PARQUET_FILES - 4 * per_group
    line = (groups16["plan_bytes"] - groups4["plan_bytes"]) / (PARQUET_FILES * 12)
    footer_gets = sum(v for (m, a), v in requests.items() if a == "input" and m != "LIST") / files
    print(f"  unit costs: {per_file * 1e3:.2f} ms per file (footer), {per_group * 1e3:.3f} ms per "
          f"row group, {line:.0f} plan bytes per mini-batch; {footer_gets:.1f} requests per "
          f"footer on S3")
    for label, files_tb, groups in ASSUMED:
        seconds = files_tb * per_file + files_tb * groups * per_group
        pieces = files_tb * groups
        gets = files_tb * footer_gets
        print(f"  1 TB as {label}: {pieces:,} mini-batches of 128 MB; planning "
              f"{seconds:.1f} s here + {gets:,.0f} footer requests one after another "
              f"({gets * S3_LATENCY:.0f} s at an assumed {S3_LATENCY * 1e3:.0f} ms each); "
              f"plan {pieces * line / 2**20:.1f} MB")
    return {"per_file": per_file, "per_group": per_group, "plan_line": line,
            "footer_requests": footer_gets, "peak_mb": max(groups4["peak_mb"],
                                                           groups16["peak_mb"])}


# -- 5. the limits --------------------------------------------------------------------------------

def _per_second(writes: float, reads: float) -> float:
    """Mini-batches per second at which one prefix reaches S3's request rate."""
    return min(S3_WRITES_PER_PREFIX / writes if writes else float("inf"),
               S3_READS_PER_PREFIX / reads if reads else float("inf"))


def airflow_limits(air: dict[str, Any]) -> None:
    fixed, per = air["rows"]
    xfixed, xper = air["xcom"]
    print("  nodes | task instances | metadata rows | XCom bytes")
    for n in MODEL_NODES:
        flag = "  > max_map_length" if n > air["max_map_length"] else ""
        print(f"  {n:>5} | {n + 2:>14} | {fixed + per * n:>13,.0f} | "
              f"{xfixed + xper * n:>10,.0f}{flag}")
    print(f"  at most {air['max_active_tasks_per_dag']} node tasks of one run at a time "
          f"(max_active_tasks_per_dag), {air['parallelism']} per scheduler (parallelism)")


def s3_limits(s3: dict[str, Any]) -> None:
    print("  S3 requests per mini-batch by prefix, and the mini-batch rate at which one "
          f"prefix reaches {S3_WRITES_PER_PREFIX:,} writes or {S3_READS_PER_PREFIX:,} reads "
          "per second:")
    for prefix, (writes, reads) in s3["per_prefix"].items():
        print(f"    {prefix:<24} {writes:.3g} writes, {reads:.3g} reads -> "
              f"{_per_second(writes, reads):,.0f} mini-batches/s")
    hottest = min(_per_second(w, r) for w, r in s3["per_prefix"].values())
    for seconds in (0.1, 1.0, 10.0):
        print(f"    at {seconds:g} s per mini-batch: reached with {hottest * seconds:,.0f} "
              "worker processes running at once (node_count x process_count_per_node)")


def listing_limits(listing: dict[Any, dict[str, Any]], s3: dict[str, Any]) -> None:
    one = listing[(1_000_000, 1000, True)]
    items = (one["peak_mb"] - one["floor_mb"]) * 2**20 / 1_000_000
    for count in (1_000_000, 10_000_000):
        print(f"  planning {count:,} files listed from S3 today (one list of InputItems, "
              f"{items:.0f} bytes each, and fsspec's listing, {s3['entry_bytes']:,.0f} bytes "
              f"each): about {count * (items + s3['entry_bytes']) / 2**30:.1f} GB")


def limits(found: dict[str, Any]) -> None:
    title("5. The model and its limits")
    if "airflow" in found:
        airflow_limits(found["airflow"])
    if "s3" in found:
        s3_limits(found["s3"])
        if "listing" in found:
            listing_limits(found["listing"], found["s3"])


PARTS = {"airflow": measure_airflow, "s3": measure_s3, "listing": measure_listing,
         "parquet": measure_parquet}


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        print(f"unknown part(s) {unknown}; known: {', '.join(PARTS)}", file=sys.stderr)
        return 2
    print(f"bench_scale_model on {machine()}; data in {DATA}; {load()}")
    started = time.monotonic()
    found = {name: PARTS[name]() for name in names or list(PARTS)}
    limits(found)
    print(f"\nbench_scale_model: {time.monotonic() - started:.0f} s; {load()}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--probe":
        kind, *rest = sys.argv[2:]
        if kind == "listing":
            listing_probe(int(rest[0]), int(rest[1]), rest[2] == "1", rest[3])
        else:
            parquet_probe(rest[0], rest[1])
    else:
        sys.exit(main(sys.argv[1:]))
