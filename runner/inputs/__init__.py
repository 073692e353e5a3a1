"""A recipe's inputs: the sha256 manifest, verify, fetch and the Hub pins, and the tag manifest of
the recipe's own files."""
