"""One node of a planned job in a process of its own: ``python run_node.py SPEC_JSON``.

SPEC_JSON holds the config, the input, the output (with its storage options), the plan and
the node's index; the node's result is printed as JSON. Tests run nodes this way to kill one
(with its workers: it is started in a session of its own) or to set its clock ahead.
"""

from __future__ import annotations

import json
import sys

from airflow_parallel_run import FileDataset, ParallelRunConfig
from airflow_parallel_run.engine.job import Job, JobPlan


def main() -> None:
    spec = json.loads(sys.argv[1])
    options = spec.get("options") or {}
    dataset = FileDataset.from_files(spec["input"], storage_options=options or None)
    job = Job(ParallelRunConfig.from_dict(spec["config"]), [dataset], spec["output"],
              output_storage_options=options)
    result = job.run_node(JobPlan.from_dict(spec["plan"]), spec["node"])
    print(json.dumps(result.to_dict()))


if __name__ == "__main__":
    main()
