"""What a launch is, before anything runs: the options and their one precedence (options.py), the
Plan and the Launch every backend receives (spec.py), the caller's environment a job takes
(jobenv.py), the rendering by the recipe's framework adapter (render.py, a layer above the
adapters) and the one script that runs a Plan (script.py)."""
