"""Command-line tools, the model zoo, analyzers."""
