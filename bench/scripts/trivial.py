"""Entry script of bench_overhead and bench_plan_memory: no work, one result per file."""


def run(mini_batch):
    return mini_batch
