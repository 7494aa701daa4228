"""MEMprop training: configurations and recipes, the training loop, checkpoints, schedules,
evaluation of trained networks and data-parallel runs."""
