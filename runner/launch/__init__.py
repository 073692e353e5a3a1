"""Carrying out a launch that runner/plan/ has resolved: preflight, the backends (local, docker,
slurm), the run script as a child process and its progress, the sbatch job, and replay."""
