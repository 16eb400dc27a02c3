"""Past one process: a study's backbone x dataset units fanned out on Ray or SLURM (submitit), results written as
shard files and merged into the one store."""
