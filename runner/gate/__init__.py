"""The expected-metrics gate: metrics from events, typed rules, evaluation, reference series, report."""
