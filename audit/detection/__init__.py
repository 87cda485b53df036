"""Running the anomaly rules (audit/rules.py): inline on every access, grant, sealed direct change and
sign-in failure, and in bulk over stored events (``manage.py scan_access``); with ``ANOMALY_RULES_AT =
"sealer"``, accesses are judged by the sealer right after it sealed them instead of in the request.

A rule that fails must not hide data from a clinician: the inline run happens in a savepoint, any
exception is caught, logged without patient data (rule name, event id, exception class) and kept as a
``RuleFailure`` row for the security dashboard, and the read goes on.

Where to look: ``inline`` (judging one access, grant, direct change or sign-in failure as it
happens), ``prefilter`` (the database-side filter of the bulk scan), ``bulk`` (``scan_access``),
``nearline`` (the sealer judging what it sealed, with the bulk engine).
Every name is importable from ``audit.detection`` itself.
"""

from __future__ import annotations

from audit.detection.bulk import (
    CHUNK,
    SCAN_RULES,
    access_count,
    scan,
    scan_accesses,
    scan_auth,
    scan_direct,
    scan_grants,
)
from audit.detection.inline import (
    Outcome,
    judge_access,
    judge_auth_event,
    judge_grant,
    judge_new_accesses,
    judge_new_grant,
    judge_seals,
    rule_failure_record,
)
from audit.detection.nearline import judge_sealed, rules_at
from audit.detection.prefilter import (
    HEAVY_BUCKETS_MAX,
    candidate_events,
    candidates,
    heavy_buckets,
)

__all__ = [
    "CHUNK",
    "HEAVY_BUCKETS_MAX",
    "SCAN_RULES",
    "Outcome",
    "access_count",
    "candidate_events",
    "candidates",
    "heavy_buckets",
    "judge_access",
    "judge_auth_event",
    "judge_grant",
    "judge_new_accesses",
    "judge_new_grant",
    "judge_sealed",
    "judge_seals",
    "rule_failure_record",
    "rules_at",
    "scan",
    "scan_accesses",
    "scan_auth",
    "scan_direct",
    "scan_grants",
]
