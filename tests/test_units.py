"""SenML units and their normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgebridge.units import (
    ALIASES,
    CONVERSIONS,
    SENML_SECONDARY_UNITS,
    SENML_UNITS,
    canonical_unit,
    is_known,
    normalise,
)

FAST = settings(deadline=None, database=None)
RATIOS = {"ppm", "ppb", "ppt", "/100", "/1000"}  # dimensionless: deliberately left alone


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (68, "degF", (20.0, "Cel")),
        (212, "°F", (100.0, "Cel")),
        (-40, "degF", (-40.0, "Cel")),
        (21.5, "degC", (21.5, "Cel")),
        (0, "K", (-273.15, "Cel")),
        (1013, "hPa", (101300, "Pa")),
        (101.325, "kPa", (101325.0, "Pa")),
        (1, "bar", (100_000, "Pa")),
        (1500, "ms", (1.5, "s")),
        (2, "h", (7200, "s")),
        (250, "g", (0.25, "kg")),
        (36, "km/h", (10.0, "m/s")),
        (1, "Wh", (3600, "J")),
        (2, "kWh", (7_200_000, "J")),
        (3, "kW", (3000, "W")),
        (3300, "mV", (3.3, "V")),
        (-60, "dBm", (-90, "dBW")),
        (120, "rpm", (2.0, "1/s")),
        (5, "lux", (5, "lx")),
    ],
)
def test_conversions(value: float, unit: str, expected: tuple[float, str]) -> None:
    converted, target = normalise(value, unit)
    assert target == expected[1]
    assert converted == pytest.approx(expected[0])
    assert type(converted) is type(expected[0])  # integers stay integers under a whole multiplication


@pytest.mark.parametrize(
    ("value", "unit"),
    [(21.5, "Cel"), (101325, "Pa"), (45.0, "%RH"), (415, "ppm"), (3, "furlong"), (1, ""), (7, "count")],
)
def test_canonical_and_unknown_units_are_unchanged(value: float, unit: str) -> None:
    assert normalise(value, unit) == (value, unit)


@pytest.mark.parametrize("value", [True, False, "open", None, [1]])
def test_non_numbers_are_unchanged(value: object) -> None:
    assert normalise(value, "degF") == (value, "degF")


def test_every_conversion_lands_on_a_canonical_senml_unit() -> None:
    for unit, conversion in CONVERSIONS.items():
        assert conversion.target in SENML_UNITS, unit
        assert conversion.target not in CONVERSIONS, unit
        assert canonical_unit(unit) == conversion.target
    assert "Cel" not in CONVERSIONS


def test_every_alias_is_known_and_not_senml() -> None:
    for alias, symbol in ALIASES.items():
        assert alias not in SENML_UNITS | SENML_SECONDARY_UNITS
        assert is_known(alias) and is_known(symbol)
        assert canonical_unit(alias) == canonical_unit(symbol)


def test_every_senml_secondary_unit_converts_except_ratios() -> None:
    assert SENML_SECONDARY_UNITS - set(CONVERSIONS) == RATIOS
    assert not SENML_UNITS & SENML_SECONDARY_UNITS
    assert is_known("Cel") and is_known("ppm") and not is_known("furlong")


@FAST
@given(
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12)
    | st.integers(-(10**12), 10**12),
    st.sampled_from(sorted({*CONVERSIONS, *ALIASES, *SENML_UNITS, "furlong"})),
)
def test_normalising_twice_changes_nothing(value: float, unit: str) -> None:
    once = normalise(value, unit)
    assert normalise(*once) == once
    assert once[1] == canonical_unit(unit)
