"""What a launch is, before anything runs: the options and their one precedence (options.py), the
run script's dry run read back as a Plan (dryrun.py, through shellwords.py), and the resolved
Launch every backend receives (resolve.py). Checks, lint and the planner take this plan as given;
runner/launch/ carries it out."""
