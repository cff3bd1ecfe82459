"""The example DAGs on a CeleryExecutor cluster of two worker hosts that share nothing but
PostgreSQL, Redis and S3: triggered through the REST API, node tasks spread over both hosts,
the output on S3 complete, exactly once and in order."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from cluster import WORKERS, Cluster

NODES = 4


@dataclass
class ExampleRun:
    dag_id: str
    step: str
    run_id: str
    state: str
    output: str  # bucket/key of the run's output folder

    def nodes(self, cluster: Cluster) -> list[dict]:
        return cluster.rest.task_instances(self.dag_id, self.run_id, f"{self.step}.node")


EXAMPLES = {  # name: DAG, its step, the run's conf
    "digits": ("digit_identification", "identify",
               {"mini_batch_size": 25, "process_count_per_node": 1}),
    "tabular": ("tabular_scoring", "score",
                {"mini_batch_size": "32KB", "process_count_per_node": 1}),
}


@pytest.fixture(scope="module")
def example_runs(cluster: Cluster) -> dict[str, ExampleRun]:
    """Both examples, triggered together (the cluster has 4 task slots for their 8 nodes)."""
    run_ids = {name: cluster.rest.trigger(dag_id, {"node_count": NODES, **conf})
               for name, (dag_id, _, conf) in EXAMPLES.items()}
    runs = {}
    for name, (dag_id, step, _) in EXAMPLES.items():
        state = cluster.rest.wait(dag_id, run_ids[name], timeout=420)
        runs[name] = ExampleRun(dag_id, step, run_ids[name], state,
                                cluster.output(dag_id, step, run_ids[name]))
    return runs


@pytest.fixture
def digits(example_runs: dict[str, ExampleRun]) -> ExampleRun:
    return example_runs["digits"]


@pytest.fixture
def tabular(example_runs: dict[str, ExampleRun]) -> ExampleRun:
    return example_runs["tabular"]


@pytest.fixture(params=["digits", "tabular"])
def example(request: pytest.FixtureRequest, cluster: Cluster) -> ExampleRun:
    run = request.getfixturevalue(request.param)
    assert run.state == "success", cluster.log_tails()
    return run


def test_node_tasks_of_an_example_run_on_both_worker_hosts(cluster: Cluster,
                                                           example: ExampleRun):
    nodes = example.nodes(cluster)

    assert len(nodes) == NODES
    assert {t["hostname"] for t in nodes} == set(WORKERS)


def test_each_worker_host_logs_under_its_own_address(cluster: Cluster, example: ExampleRun):
    folders = cluster.s3.ls(f"{example.output}/logs/sys/node")

    assert {f.rsplit("/", 1)[-1] for f in folders} == {
        cluster.network.address[host] for host in WORKERS}


def test_the_job_report_is_written_to_the_store(cluster: Cluster, example: ExampleRun):
    assert cluster.s3.exists(f"{example.output}/logs/job_report.html")


def test_every_digit_image_is_identified_once_in_order(cluster: Cluster, digits: ExampleRun):
    assert digits.state == "success", cluster.log_tails()
    images = sorted(p.rsplit("/", 1)[-1] for p in cluster.s3.ls(cluster.data("DIGITS_DATA") + "/images"))

    lines = cluster.s3.cat(f"{digits.output}/digits.txt").decode().splitlines()

    assert len(images) == 797
    assert [line.split(": ")[0] for line in lines] == images


def test_every_application_is_scored_once_in_order(cluster: Cluster, tabular: ExampleRun):
    assert tabular.state == "success", cluster.log_tails()

    lines = cluster.s3.cat(f"{tabular.output}/scores.csv").decode().splitlines()

    assert lines[0] == "id,score,decision"
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(100000, 120000))
