"""Shared by the tests that evaluate the 4,000-person sample end to end (conftest's
``research``): settings that sample needs and a national evaluation does not."""

from __future__ import annotations

from impact.twins.riskset import DEFAULT_EXACT

#: Exact strata of twins on the 4,000-person sample: the defaults without region. The joint
#: pre-trend test over the 24 placebo months needs more matched treated persons than
#: periods (and publication requires it, ``publish.require_parallel_trends``); the default
#: strata leave 22 of the sample's 42 treated matched, these 31.
SMALL_SAMPLE_EXACT = tuple(k for k in DEFAULT_EXACT if k != "region_code")
