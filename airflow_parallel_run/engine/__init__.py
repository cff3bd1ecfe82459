"""The engine: runs mini-batches on one machine with a pool of worker processes.

It knows nothing of Airflow: ``node.Node`` supervises workers (``worker.py``) over one shard,
``job.run_job`` plans, runs every shard here and reduces.
"""
