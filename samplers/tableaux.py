"""Butcher tableaux as data. One generic Runge-Kutta step (samplers/ode.py) runs all of them.

Coefficients from Hairer, Norsett & Wanner, Solving ODEs I (dopri5: table 5.2 of II.5; bosh3:
Bogacki & Shampine 1989; Fehlberg 1(2): Fehlberg 1969, also in torchdiffeq), checked by the
convergence-order tests in tests/test_rk_solvers.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction as F


@dataclass(frozen=True)
class ButcherTableau:
    name: str
    order: int  # order of the solution that is propagated
    c: tuple  # stage times
    a: tuple  # a[i] has i entries: stage i's weights on stages 0..i-1
    b: tuple  # solution weights
    b_low: tuple | None = None  # embedded lower-order weights (adaptive methods only)
    description: str = ""

    def __post_init__(self):
        n = len(self.c)
        assert len(self.a) == n and all(len(row) == i for i, row in enumerate(self.a)), self.name
        assert len(self.b) == n and (self.b_low is None or len(self.b_low) == n), self.name
        for ci, row in zip(self.c, self.a):
            assert abs(float(sum(row, F(0))) - float(ci)) < 1e-15, f"{self.name}: row sum != c"

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        return self.b_low is not None

    @property
    def error_order(self) -> int:
        """Order of the embedded estimate: the step-size controller's exponent is 1/(this+1)."""
        return self.order - 1

    @property
    def fsal(self) -> bool:
        """First Same As Last: the last stage is evaluated at the new solution, so it is the next
        step's first stage (and, for our flow ODE, the denoised prediction there)."""
        return self.c[-1] == 1 and tuple(self.a[-1]) == tuple(self.b[:-1]) and self.b[-1] == 0

    def floats(self):
        """(c, a, b, e) as floats, e = b - b_low (the error weights), ready for the stepper."""
        c = [float(v) for v in self.c]
        a = [[float(v) for v in row] for row in self.a]
        b = [float(v) for v in self.b]
        e = None if self.b_low is None else [float(hi - lo) for hi, lo in zip(self.b, self.b_low)]
        return c, a, b, e


def _t(*values):
    return tuple(F(v) if not isinstance(v, F) else v for v in values)


# --- fixed-step methods: follow the scheduler's sigmas -----------------------------------------

EULER = ButcherTableau("euler", 1, _t(0), ((),), _t(1), description="1 call per step; DDIM in the data form")
MIDPOINT = ButcherTableau("midpoint", 2, _t(0, F(1, 2)), ((), _t(F(1, 2))), _t(0, 1))
HEUN = ButcherTableau("heun", 2, _t(0, 1), ((), _t(1)), _t(F(1, 2), F(1, 2)))
RALSTON3 = ButcherTableau(
    "ralston3", 3, _t(0, F(1, 2), F(3, 4)), ((), _t(F(1, 2)), _t(0, F(3, 4))), _t(F(2, 9), F(1, 3), F(4, 9))
)
RK4 = ButcherTableau(
    "rk4", 4, _t(0, F(1, 2), F(1, 2), 1), ((), _t(F(1, 2)), _t(0, F(1, 2)), _t(0, 0, 1)),
    _t(F(1, 6), F(1, 3), F(1, 3), F(1, 6)),
)

# --- embedded pairs: adaptive step size ----------------------------------------------------------

HEUN_EULER = ButcherTableau(
    "heun_euler", 2, _t(0, 1), ((), _t(1)), _t(F(1, 2), F(1, 2)), b_low=_t(1, 0),
    description="Heun 2(1): the cheapest adaptive pair",
)
FEHLBERG2 = ButcherTableau(
    "fehlberg2", 2, _t(0, F(1, 2), 1), ((), _t(F(1, 2)), _t(F(1, 256), F(255, 256))),
    _t(F(1, 512), F(255, 256), F(1, 512)), b_low=_t(F(1, 256), F(255, 256), 0),
    description="Runge-Kutta-Fehlberg 2(1)",
)
BOSH3 = ButcherTableau(
    "bosh3", 3, _t(0, F(1, 2), F(3, 4), 1),
    ((), _t(F(1, 2)), _t(0, F(3, 4)), _t(F(2, 9), F(1, 3), F(4, 9))),
    _t(F(2, 9), F(1, 3), F(4, 9), 0), b_low=_t(F(7, 24), F(1, 4), F(1, 3), F(1, 8)),
    description="Bogacki-Shampine 3(2), FSAL: 3 calls per step",
)
DOPRI5 = ButcherTableau(
    "dopri5", 5, _t(0, F(1, 5), F(3, 10), F(4, 5), F(8, 9), 1, 1),
    (
        (),
        _t(F(1, 5)),
        _t(F(3, 40), F(9, 40)),
        _t(F(44, 45), F(-56, 15), F(32, 9)),
        _t(F(19372, 6561), F(-25360, 2187), F(64448, 6561), F(-212, 729)),
        _t(F(9017, 3168), F(-355, 33), F(46732, 5247), F(49, 176), F(-5103, 18656)),
        _t(F(35, 384), 0, F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84)),
    ),
    _t(F(35, 384), 0, F(500, 1113), F(125, 192), F(-2187, 6784), F(11, 84), 0),
    b_low=_t(F(5179, 57600), 0, F(7571, 16695), F(393, 640), F(-92097, 339200), F(187, 2100), F(1, 40)),
    description="Dormand-Prince 5(4), FSAL: 6 calls per step",
)

ADAPTIVE = {t.name: t for t in (DOPRI5, BOSH3, HEUN_EULER, FEHLBERG2)}
FIXED = {t.name: t for t in (EULER, HEUN, MIDPOINT, RALSTON3, RK4)}
ALL = {**ADAPTIVE, **FIXED}
