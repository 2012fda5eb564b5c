"""Check every response a test client receives against botocore's output shape.

Responses are never validated at request time (it costs ~95 µs); tests do it
for every call instead, through this botocore event hook.
"""

from __future__ import annotations

from typing import Any

from botocore.validate import ParamValidator

_pv = ParamValidator()


def check_output(parsed: dict[str, Any], model: Any) -> None:
    shape = model.output_shape
    if shape is None:
        return
    body = {k: v for k, v in parsed.items() if k not in ("ResponseMetadata", "Error")}
    if "Error" in parsed:
        return
    report = _pv.validate(body, shape)
    if report.has_errors():
        raise AssertionError(f"{model.name} response does not match its output shape:\n"
                             f"{report.generate_report()}")


def _after_call(http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
    if http_response.status_code == 200:
        check_output(parsed, model)


def install(client: Any) -> Any:
    service = client.meta.service_model.service_name
    client.meta.events.register(f"after-call.{service}", _after_call)
    return client
