"""Data contracts: the YAML model, the polars rules and the Great Expectations suites."""
