"""The image: the doctor self-check inside the container and enroot staging for Slurm."""
