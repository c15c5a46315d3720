"""Every error keysim raises crosses a process boundary whole: a sweep's worker raises it, the
parent records it (sim/sweep/runner.py), so it must pickle and come back equal in type, message
and fields."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from pathlib import Path
from typing import Any

import pytest

import protocol
import sim
from sim.inputs.scenario import ScenarioError
from sim.sweep.runner import SweepResult

#: an argument for each parameter name the errors' constructors take
SAMPLES: dict[str, Any] = {
    "code": "error-sample",
    "message": "a sample message",
    "key": "section.key",
    "problem": "is wrong",
    "path": Path("some/where"),
    "problems": [ScenarioError("churn.shape", "must be > 0"), ScenarioError("rooms.dms", "must be >= 0")],
    "result": SweepResult(18, 2, 5, [], 11, 3.5),
    "until": 12.5,
}


def _errors() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in (protocol, sim):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name.endswith("__main__"):  # runs the command line when imported
                continue
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, BaseException) and cls.__module__ == info.name:
                    found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[k] for k in sorted(found)]


ERRORS = _errors()


def test_the_errors_are_found() -> None:
    names = {cls.__name__ for cls in ERRORS}
    assert {
        "ProtocolError",
        "CryptoError",
        "ScenarioError",
        "ScenarioErrors",
        "SweepError",
        "ReportError",
    } <= names


@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__qualname__)
def test_every_error_pickles_whole(cls: type[BaseException]) -> None:
    parameters = [
        p
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    args = [SAMPLES[p.name] for p in parameters if p.name in SAMPLES or p.default is p.empty]
    error = cls(*args)
    if isinstance(error, protocol.ProtocolError):
        error = cls(*args, method="totp")  # with structured details, as the 2FA gate attaches
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is cls and str(back) == str(error)
    fields = (
        {k: v for k, v in vars(error).items() if not k.startswith("_")} if hasattr(error, "__dict__") else {}
    )
    for name, value in fields.items():
        assert getattr(back, name) == value, name
