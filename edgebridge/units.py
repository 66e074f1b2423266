"""Units: the SenML symbols of RFC 8428 / RFC 8798, and normalisation to one unit per quantity.

A reading's ``"u"`` is a SenML symbol (``Cel``, ``%RH``, ``Pa``, ...) or one of the common non-SenML
spellings in :data:`ALIASES` (``degF``, ``kPa``, ``mbar``, ``lux``, ...). :func:`normalise` converts a
number to the canonical unit of its quantity, which the enricher writes into processed events:

- temperature -> ``Cel`` (also from ``K``, although ``K`` is SenML too: operators read Celsius);
- otherwise the SenML primary unit the RFC 8798 secondary units are defined against: ``hPa`` -> ``Pa``,
  ``ms``/``min``/``h`` -> ``s``, ``g`` -> ``kg``, ``km/h`` -> ``m/s``, ``Wh``/``kWh`` -> ``J``,
  ``mV`` -> ``V``, ``dBm`` -> ``dBW``, ...;
- except dimensionless ratios (``%``, ``%RH``, ``ppm``, ``ppb``, ...), kept as they are: 415 ppm of CO2
  means more to a reader than 0.000415.

An unknown unit, a unit that is already canonical, and a value that is not a number (a string, a
boolean) come back unchanged; aliases are resolved (``lux`` -> ``lx``). Results are not rounded:
``(68, "degF")`` gives exactly ``(20.0, "Cel")``, but ``(1.1, "hPa")`` gives ``(110.00000000000001, "Pa")``.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar, overload

_T = TypeVar("_T")

__all__ = [
    "ALIASES",
    "CONVERSIONS",
    "SENML_SECONDARY_UNITS",
    "SENML_UNITS",
    "Conversion",
    "canonical_unit",
    "is_known",
    "normalise",
]

#: Primary units of the SenML registry (RFC 8428 section 12.1, RFC 8798 section 2, NTU of ISO 7027-1).
SENML_UNITS: frozenset[str] = frozenset(
    {
        # RFC 8428
        "m", "kg", "g", "s", "A", "K", "cd", "mol", "Hz", "rad", "sr", "N", "Pa", "J", "W", "C", "V",
        "F", "Ohm", "S", "Wb", "T", "H", "Cel", "lm", "lx", "Bq", "Gy", "Sv", "kat", "m2", "m3", "l",
        "m/s", "m/s2", "m3/s", "l/s", "W/m2", "cd/m2", "bit", "bit/s", "lat", "lon", "pH", "dB", "dBW",
        "Bspl", "count", "/", "%", "%RH", "%EL", "EL", "1/s", "1/min", "beat/min", "beats", "S/m",
        # RFC 8798
        "B", "VA", "VAs", "var", "vars", "J/m", "kg/m3", "deg",
        # ISO 7027-1
        "NTU",
    }
)  # fmt: skip

#: Secondary units of the SenML registry (RFC 8798 section 3 and its later registrations).
SENML_SECONDARY_UNITS: frozenset[str] = frozenset(
    {
        "ms", "min", "h", "MHz", "kW", "kVA", "kvar", "Ah", "Wh", "kWh", "varh", "kvarh", "kVAh",
        "Wh/km", "KiB", "GB", "Mbit/s", "B/s", "MB/s", "mV", "mA", "dBm", "ug/m3", "mm/h", "m/h",
        "ppm", "/100", "/1000", "hPa", "mm", "cm", "km", "km/h", "ppb", "ppt", "VAh", "mg/l", "ug/l",
        "g/l",
    }
)  # fmt: skip


class Conversion(NamedTuple):
    """``canonical = (value + offset) * mul / div``: exact integers where they can be, so that
    ``(212, "degF")`` is exactly ``100.0`` and ``(1500, "ms")`` exactly ``1.5``."""

    target: str
    mul: float = 1
    div: float = 1
    offset: float = 0


#: Units that normalise to another one.
CONVERSIONS: dict[str, Conversion] = {
    # temperature
    "K": Conversion("Cel", offset=-273.15),
    "degF": Conversion("Cel", 5, 9, -32),
    # time
    "ms": Conversion("s", div=1000),
    "min": Conversion("s", 60),
    "h": Conversion("s", 3600),
    # pressure
    "hPa": Conversion("Pa", 100),
    "kPa": Conversion("Pa", 1000),
    "bar": Conversion("Pa", 100_000),
    "mbar": Conversion("Pa", 100),
    "psi": Conversion("Pa", 6_894.757293168361),
    # mass, length, volume, speed
    "g": Conversion("kg", div=1000),
    "mm": Conversion("m", div=1000),
    "cm": Conversion("m", div=100),
    "km": Conversion("m", 1000),
    "l": Conversion("m3", div=1000),
    "l/s": Conversion("m3/s", div=1000),
    "km/h": Conversion("m/s", 1000, 3600),
    "m/h": Conversion("m/s", div=3600),
    "mm/h": Conversion("m/s", div=3_600_000),
    "mph": Conversion("m/s", 0.44704),
    # electricity, energy, power
    "mV": Conversion("V", div=1000),
    "kV": Conversion("V", 1000),
    "mA": Conversion("A", div=1000),
    "mW": Conversion("W", div=1000),
    "kW": Conversion("W", 1000),
    "Wh": Conversion("J", 3600),
    "kWh": Conversion("J", 3_600_000),
    "Wh/km": Conversion("J/m", 3.6),
    "Ah": Conversion("C", 3600),
    "kVA": Conversion("VA", 1000),
    "kvar": Conversion("var", 1000),
    "VAh": Conversion("VAs", 3600),
    "kVAh": Conversion("VAs", 3_600_000),
    "varh": Conversion("vars", 3600),
    "kvarh": Conversion("vars", 3_600_000),
    "dBm": Conversion("dBW", offset=-30),
    # frequency, rates
    "kHz": Conversion("Hz", 1000),
    "MHz": Conversion("Hz", 1_000_000),
    "1/min": Conversion("1/s", div=60),
    # information
    "KiB": Conversion("B", 1024),
    "GB": Conversion("B", 1_000_000_000),
    "B/s": Conversion("bit/s", 8),
    "Mbit/s": Conversion("bit/s", 1_000_000),
    "MB/s": Conversion("bit/s", 8_000_000),
    # concentration (mass per volume; ratios such as ppm are left alone)
    "ug/m3": Conversion("kg/m3", div=1_000_000_000),
    "mg/l": Conversion("kg/m3", div=1000),
    "ug/l": Conversion("kg/m3", div=1_000_000),
    "g/l": Conversion("kg/m3"),
}

#: Common spellings that are not SenML symbols -> the symbol they mean (which may convert further).
ALIASES: dict[str, str] = {
    "°C": "Cel",
    "degC": "Cel",
    "°F": "degF",
    "lux": "lx",
    "kph": "km/h",
    "rpm": "1/min",
}


def canonical_unit(unit: str) -> str:
    """The unit :func:`normalise` converts ``unit`` into (``unit`` itself when unknown or canonical)."""
    unit = ALIASES.get(unit, unit)
    conversion = CONVERSIONS.get(unit)
    return unit if conversion is None else conversion.target


def is_known(unit: str) -> bool:
    """True for a SenML symbol (primary or secondary) or a spelling :func:`normalise` understands."""
    return unit in SENML_UNITS or unit in SENML_SECONDARY_UNITS or unit in ALIASES or unit in CONVERSIONS


@overload
def normalise(value: float, unit: str) -> tuple[float, str]: ...
@overload
def normalise(value: _T, unit: str) -> tuple[_T, str]: ...


def normalise(value: object, unit: str) -> tuple[object, str]:
    """``(value, unit)`` in the canonical unit of its quantity; anything unknown comes back unchanged.

    Only ``int`` and ``float`` values convert (a ``bool``, a string come back as given). An alias is
    resolved even when no conversion follows (``lux`` -> ``lx``); an integer stays an integer when the
    conversion is a whole multiplication (``(3, "kW")`` -> ``(3000, "W")``).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return value, unit
    symbol = ALIASES.get(unit, unit)
    conversion = CONVERSIONS.get(symbol)
    if conversion is None:
        return value, symbol
    target, mul, div, offset = conversion
    converted = (value + offset) * mul
    if div != 1:
        converted = converted / div
    return converted, target
