"""Entry script of the Airflow tests whose init() always fails."""


def init():
    raise RuntimeError("init() is broken on purpose")


def run(mini_batch):
    return mini_batch
