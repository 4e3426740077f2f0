"""Map the repository root to the package `lpdc` and every folder below it to `lpdc.<folder>`."""

from setuptools import find_packages, setup

_SKIP = ["tests", "tests.*", "bench", "bench.*", "build", "build.*", "*.egg-info"]

setup(
    packages=["lpdc"] + [f"lpdc.{p}" for p in find_packages(".", exclude=_SKIP)],
    package_dir={"lpdc": "."},
)
