"""The entry script of specs/azureml/parallel.yml, as Azure ML's parallel jobs call it:
init() first, then run(mini_batch) with a list of lines; one result row per line."""

import argparse

suffix = None


def init():
    global suffix
    parser = argparse.ArgumentParser()
    parser.add_argument("--suffix", default="")
    args, _ = parser.parse_known_args()
    suffix = args.suffix


def run(mini_batch):
    assert suffix is not None, "init() was not called"
    return [f"{len(line.split())}\t{line}{suffix}" for line in mini_batch]
