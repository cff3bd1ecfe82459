"""The engine: runs mini-batches on one machine with a pool of worker processes.

It knows nothing of Airflow: ``node.Node`` supervises workers (``worker.py``) over one shard,
``job.Job`` is the one entry point (plan, run a node, reduce, adopt), and ``job.run_job``
runs them all here, every node on a thread (``local_run.py``).
"""
