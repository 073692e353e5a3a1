"""Lines miles logs as a warning when the run is already lost (runner/launch/watch.py ends the run)."""

from __future__ import annotations

# Quoted from miles 78527b9102b3a5f15891128cbec3ac6c2dc4089e (github.com/radixark/miles):
#   miles/backends/megatron_utils/__init__.py:23-26
#       logging.warning("miles megatron.bridge plugins failed to load: %s", _e)
#   miles_plugins/megatron_bridge/__init__.py:74-77
#       logger.warning("miles nemotron_h plugin failed to load: %s", _e)
#   miles_plugins/megatron_bridge/nemotron_h.py:211-217 (fn is _build_bridge_subclass)
#       logger.warning("miles nemotron_h shim %s not applied: %s", fn.__name__, e)
MILES_PATTERNS: list[tuple[str, str]] = [
    (r"miles megatron\.bridge plugins failed to load: ",
     "miles' Megatron-Bridge plugins failed to load: the model would be built without miles' bridges"),
    (r"miles nemotron_h plugin failed to load: ",
     "miles' Nemotron-H bridge plugin failed to load: the model would be built by the stock bridge"),
    (r"miles nemotron_h shim \S+ not applied: ",
     "miles' Nemotron-H bridge subclass was not registered: the model would be built by the stock bridge"),
]

