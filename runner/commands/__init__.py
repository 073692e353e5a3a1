"""Click commands, one module per verb. Keep imports of heavy libraries inside the functions."""
