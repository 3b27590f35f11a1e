"""GalSim mock surveys for demos, docs and tests (no downloads needed).

:func:`make_survey` renders one sky as seen by an ``sdss-like`` and a
``des-like`` survey: FITS tiles per band with TAN WCS, sky noise, PSF,
saturation and weight maps; source tables; a Galaxy-Zoo-like vote table; and
the truth.
"""

from catbuilder.synth.presets import PRESETS, SurveyPreset, get_preset
from catbuilder.synth.survey import MockSurvey, SurveyFiles, make_survey, open_survey

__all__ = [
    "PRESETS",
    "MockSurvey",
    "SurveyFiles",
    "SurveyPreset",
    "get_preset",
    "make_survey",
    "open_survey",
]
