"""Resources of the `impact` code location.

`ImpactConfig` names the evaluation config (``configs/*.yaml``) every asset reads. The
config itself is validated by :func:`impact.config.load_config`; an invalid file fails the
first asset that reads it, with the file and field in the message.
"""

import os

import dagster as dg

from impact.config import ConfigError, EvaluationConfig, load_config

#: Environment variable naming the evaluation config of the code location.
CONFIG_ENV = "IMPACT_CONFIG"
#: Config used when IMPACT_CONFIG is unset (relative to the working directory: the repo root).
DEFAULT_CONFIG = "configs/demo.yaml"


class ImpactConfig(dg.ConfigurableResource):
    """The evaluation config (``configs/*.yaml``) of a run.

    ``path`` defaults to ``$IMPACT_CONFIG``, else ``configs/demo.yaml``. ``data_root``, when
    set, replaces the config's ``data.root`` (``impact demo --out DIR``).
    """

    path: str = DEFAULT_CONFIG
    data_root: str | None = None

    def load(self) -> EvaluationConfig:
        """The validated config; a `dg.Failure` naming the file and field if it is invalid."""
        try:
            cfg = load_config(self.path)
        except ConfigError as exc:
            raise dg.Failure(description=str(exc)) from None
        return cfg.with_data_root(self.data_root) if self.data_root else cfg


def impact_config_from_env() -> ImpactConfig:
    """`ImpactConfig` whose path is `EnvVar("IMPACT_CONFIG")` when that variable is set.

    `EnvVar` (not ``os.environ[...]``) shows the value's source in the UI; it is used only
    when the variable exists, so an unset variable falls back to the demo config.
    """
    if CONFIG_ENV in os.environ:
        return ImpactConfig(path=dg.EnvVar(CONFIG_ENV))
    return ImpactConfig()
