"""Launching a recipe: the resolved launch, its plan (the run script's dry run), preflight, the
backends (local, docker, slurm), the run script as a child process, and the sbatch job."""
