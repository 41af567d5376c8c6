"""The entry script of specs/azureml/parallel.yml, as Azure ML's parallel jobs call it:
init() once per process, then run(mini_batch) with a list of lines for each mini-batch;
one result row per line."""

import argparse
import os

suffix = None


def init():
    global suffix
    parser = argparse.ArgumentParser()
    parser.add_argument("--suffix", default="")
    args, _ = parser.parse_known_args()
    suffix = args.suffix
    print(f"init() in process {os.getpid()}")  # the log of its first mini-batch


def run(mini_batch):
    assert suffix is not None, "init() was not called"
    return [f"{len(line.split())}\t{line}{suffix}" for line in mini_batch]
