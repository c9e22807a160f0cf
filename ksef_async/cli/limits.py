"""`ksef-async limits`: the context's session limits, the subject's certificate limits and the API rate limits."""

from __future__ import annotations

import json
from typing import Annotated, Any

from cyclopts import Parameter

from ksef_async.cli._app import app
from ksef_async.cli._connection import EXIT_OK, Connection, run_async
from ksef_async.models import unstructure

__all__ = ["limits"]


@app.command(name="limits")
def limits(
    *,
    connection: Connection = Connection(),  # noqa: B008 - an immutable dataclass of options
    as_json: Annotated[bool, Parameter(name="--json", negative="")] = False,
) -> int:
    """Print the limits in force: GET /limits/context, GET /limits/subject and GET /rate-limits.

    The rate limits are read group by group, as the client's limiter takes them after login (requests per second,
    minute and hour; "-" is not limited). Exits 0, or 1 when KSeF refuses, 2 for usage errors.

    Parameters
    ----------
    connection
        Where and how to log in.
    as_json
        Print one JSON object: ``context``, ``subject`` (the spec's field names) and ``rateLimits``.
    """

    async def main() -> dict[str, Any]:
        async with connection.client() as client:
            context = await client.limits.context()
            subject = await client.limits.subject()
            report = await client.rate_limits.report()
        return {
            "context": unstructure(context),
            "subject": unstructure(subject),
            "rateLimits": {
                group: {"perSecond": w.per_second, "perMinute": w.per_minute, "perHour": w.per_hour}
                for group, w in sorted(report.limits.items())
            },
        }

    def finish(result: dict[str, Any]) -> int:
        if as_json:
            print(json.dumps(result, ensure_ascii=False, indent=2))
            return EXIT_OK
        for area in ("context", "subject"):
            for section, values in result[area].items():
                if isinstance(values, dict):
                    shown = ", ".join(f"{k} {v}" for k, v in values.items())
                    print(f"{area} {section}: {shown}")
                else:
                    print(f"{area} {section}: {values}")
        for group, windows in result["rateLimits"].items():
            per = [f"{'-' if windows[k] is None else windows[k]}/{unit}" for k, unit in _UNITS]
            print(f"rate limit {group}: {' '.join(per)}")
        return EXIT_OK

    return run_async(main, finish)


_UNITS = (("perSecond", "s"), ("perMinute", "min"), ("perHour", "h"))
