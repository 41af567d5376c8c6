"""`python -m containerexec`: what a cluster's nodes run (no console script needed on PATH)."""

from containerexec.cli import main

if __name__ == "__main__":
    main()
