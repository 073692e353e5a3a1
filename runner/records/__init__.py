"""Run records: run directories and run.json, and replay of a recorded run."""
