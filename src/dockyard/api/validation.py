"""Input validation from botocore's service models.

``Validator.check(op, params)`` returns None when the input is acceptable and
the error text otherwise. botocore's ParamValidator makes the decisions and
words the errors; a faster validator compiled from the same shapes may take
over the accept/reject decision (it must make exactly ParamValidator's
decisions, which the property test in tests/unit checks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.model import OperationModel, ServiceModel
from botocore.validate import ParamValidator


class Validator:
    def __init__(self, model: ServiceModel,
                 compiled: dict[str, Callable[[Any], bool]] | None = None) -> None:
        self._model = model
        self._pv = ParamValidator()
        self._ops: dict[str, OperationModel] = {n: model.operation_model(n) for n in model.operation_names}
        # op name -> fast accept/reject function (True = valid); optional.
        self._compiled = compiled or {}

    def operation(self, name: str) -> OperationModel | None:
        return self._ops.get(name)

    def check(self, op: str, params: Any) -> str | None:
        fast = self._compiled.get(op)
        if fast is not None and fast(params):
            return None
        return self.explain(op, params)

    def explain(self, op: str, params: Any) -> str | None:
        shape = self._ops[op].input_shape
        if shape is None:
            return None if params == {} else "Unknown parameters in input"
        try:
            report = self._pv.validate(params, shape)
        except (RuntimeError, OverflowError, ValueError) as exc:
            # dateutil raises on some timestamps (e.g. 1e20) instead of reporting them.
            return f"Parameter validation failed:\nInvalid timestamp value: {exc}"
        if report.has_errors():
            return report.generate_report()
        return None
