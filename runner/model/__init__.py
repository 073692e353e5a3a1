"""The model, generically: parallel layouts and their rules, the memory vocabulary, the planner, the family loader."""
