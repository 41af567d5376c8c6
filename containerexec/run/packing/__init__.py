"""Packing: K shard values of an array in one container (planner.py: which shards share
one; batch.py: driving one packed container; scripts.py: the sh it runs)."""
