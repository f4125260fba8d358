"""Job payloads as types: each job kind has one shape, declared by the module that reads it
and written through it, so producer and consumer cannot drift apart. Pure."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Self

from porter.errors import PorterError
from porter.models import Job


class BadPayload(PorterError):
    """A job's payload does not have its kind's shape (a bug, or a job from an older Porter)."""


@dataclasses.dataclass(frozen=True)
class Payload:
    """Base of the payload dataclasses: `kind` names the job kind they belong to."""

    kind: ClassVar[str]

    def dump(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def of(cls, job: Job) -> Self:
        """The job's payload in this shape; unknown keys are ignored, missing ones refused."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        missing = [name for name, f in fields.items() if name not in job.payload
                   and f.default is dataclasses.MISSING]
        if job.kind != cls.kind or missing:
            raise BadPayload(f"job {job.key} ({job.kind}) is not a {cls.kind} job"
                             + (f": missing {', '.join(missing)}" if missing else ""))
        return cls(**{name: job.payload[name] for name in fields if name in job.payload})
