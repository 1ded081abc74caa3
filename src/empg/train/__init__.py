"""The single-machine RL trainer: typed config, loop, checkpoints, metrics, plots."""
