"""The person-month research panel and the ILA episode tables.

Modules: :mod:`~impact.panel.build` (the builders), :mod:`~impact.panel.demography`
(grid, residence, education, dependants), :mod:`~impact.panel.labour` (employment,
unemployment, benefits), :mod:`~impact.panel.learning` (ILA status, prior learning),
:mod:`~impact.panel.state` (dated events -> monthly states) and
:mod:`~impact.panel.dictionary` (the data dictionary). Episodes, treatment and
near-participants are defined in :mod:`impact.episodes`.
"""

from impact.panel.build import PanelResult, build, build_episodes, data_period, scan

__all__ = ["PanelResult", "build", "build_episodes", "data_period", "scan"]
