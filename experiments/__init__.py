"""The report's experiments on any published dataset: specs, runner, paired statistics, reports."""
