"""Entry script of the cluster tests: behave.py's run(), with each call marked on the host that
made it, in ``$AIRFLOW_HOME/calls.log`` (one input file name a line): a mark outlives the node
task and its staging folder, and is written even while the store does not answer."""

import os

import behave

init = behave.init


def run(mini_batch, context):
    with open(os.path.join(os.environ["AIRFLOW_HOME"], "calls.log"), "a") as marks:
        marks.write("".join(f"{os.path.basename(path)}\n" for path in mini_batch))
    return behave.run(mini_batch, context)
