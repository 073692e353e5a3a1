"""The `recipe` runner: load, check, plan, launch and replay pinned LLM RL recipes."""

__version__ = "0.1.0"
