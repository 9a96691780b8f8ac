"""impact: counterfactual impact evaluation of Latvia's Individual Learning Accounts.

The library is plain Python (polars, numpy, statsmodels, ...). It never imports ``dagster``;
orchestration lives in the top-level ``pipelines`` package (see design.md, section 3).
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("impact")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0+unknown"

__all__ = ["__version__", "twins_did"]


def __getattr__(name: str) -> object:
    # lazy exports: `import impact` stays fast (no numpy/polars/scikit-learn until used)
    if name == "twins_did":
        from impact.estimate.did import twins_did

        return twins_did
    raise AttributeError(f"module 'impact' has no attribute {name!r}")
