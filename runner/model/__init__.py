"""The model: Megatron flag rules against config.json, the layer shape, parallel layouts, memory planner."""
