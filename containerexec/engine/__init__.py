"""The seam to the container engine.

base.py is the protocol, payload.py the pure create payload, docker.py the adapter
(dockererrors.py: its one error translation point).
"""
