"""The commands of `containerexec`, one module per group of them, each imported only when
one of its commands runs (cli.COMMANDS). What several commands share (the App, options,
displays, exit statuses, the Slurm flags, loading other formats) is in cli/ itself."""
