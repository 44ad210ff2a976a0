"""Verdicts: what each case run says about the implementation it ran against.

    PASS                     every check made and met
    FAIL                     a check not met, or the case could not run (an error in its setup)
    WARNED                   passed, but a check was downgraded to a warning (the warning says which)
    EXPECTED-NONCONFORMANCE  a third-party implementation's known finding, reproduced (strict: if the
                             implementation starts conforming, the case FAILs so the record stays true)
    INCONCLUSIVE             a conformance test part could not reach the point it judges (its
                             preamble failed: e.g. no IKE SA to test a rekey on); the reason says why
    NOT-APPLICABLE           the case does not apply to this scenario or implementation
    NOT-RUN                  the implementation chosen for a role cannot fill it on this machine (e.g.
                             a kernel data plane on a kernel without ESP); the reason says why
    SKIPPED                  the case could not be run here; the reason says why

Cases use the helpers below: `downgraded(...)` instead of a bare warnings.warn for a check that
cannot be made, `expect_nonconformance(...)` for a third party's known finding, and
`not_applicable(...)` for a feature a profile does not have.
"""
from __future__ import annotations

import warnings

import pytest

PASS, FAIL, WARNED, NONCONFORMANCE, INCONCLUSIVE, NOT_APPLICABLE, NOT_RUN, SKIPPED = (
    "PASS", "FAIL", "WARNED", "EXPECTED-NONCONFORMANCE", "INCONCLUSIVE", "NOT-APPLICABLE", "NOT-RUN", "SKIPPED")
# worst first: a matrix cell shows the worst verdict of its cases
ORDER = (FAIL, NONCONFORMANCE, INCONCLUSIVE, WARNED, PASS, NOT_RUN, SKIPPED, NOT_APPLICABLE)
NA_PREFIX = "not applicable: "
NOT_RUN_PREFIX = "not run: "
INCONCLUSIVE_PREFIX = "inconclusive: "
NONCONFORMANCE_PROPERTY = "nonconformance"


class CheckDowngraded(UserWarning):
    """A check the case could not make against this implementation (the verdict is WARNED)."""


def downgraded(message: str) -> None:
    """Say that a check was not made (e.g. the role reports no counters); the case ends WARNED."""
    warnings.warn(message, CheckDowngraded, stacklevel=2)


def not_applicable(reason: str):
    """End the case as NOT-APPLICABLE (a skip whose reason says so)."""
    pytest.skip(NA_PREFIX + reason)


def not_run(reason: str):
    """End the case as NOT-RUN: a role's implementation cannot run on this machine (RoleUnavailable's
    message, which names the role and what is missing)."""
    pytest.skip(NOT_RUN_PREFIX + reason)


def inconclusive(reason: str):
    """End a conformance test part as INCONCLUSIVE: it could not reach the point it judges."""
    pytest.skip(INCONCLUSIVE_PREFIX + reason)


def expect_nonconformance(request, implementation: str, finding: str, source: str) -> None:
    """The rest of the case is expected to fail for `implementation`: a known nonconformance of a
    third party (never of ours), reported as such. Strict: if the case passes, it FAILs, saying that
    the implementation now conforms and the expectation should go."""
    if implementation == "ours":
        raise ValueError("our own implementation gets no expected nonconformance: fix it instead")
    request.node.user_properties.append(
        (NONCONFORMANCE_PROPERTY, {"implementation": implementation, "finding": finding, "source": source}))
    request.node.add_marker(pytest.mark.xfail(
        strict=True, raises=AssertionError,
        reason=f"expected nonconformance of {implementation} ({source}): {finding}; if this passes, "
               f"{implementation} now conforms: remove the expectation"))


def is_downgrade(category: str, filename: str, cases_dir: str) -> bool:
    """A recorded warning that downgrades a check: our category, or any warning raised by a case."""
    return category.endswith("CheckDowngraded") or filename.startswith(cases_dir)


def verdict_of(outcome: str, message: str, nonconformance: bool, downgrades: list[str]) -> str:
    """The verdict of one case run from pytest's outcome (passed, failed, error, skipped, xfailed)."""
    if outcome in ("failed", "error"):
        return FAIL
    if outcome == "xfailed":
        return NONCONFORMANCE if nonconformance else SKIPPED
    if outcome == "skipped":
        if message.startswith(INCONCLUSIVE_PREFIX):
            return INCONCLUSIVE
        if message.startswith(NOT_RUN_PREFIX):
            return NOT_RUN
        return NOT_APPLICABLE if message.startswith(NA_PREFIX) else SKIPPED
    return WARNED if downgrades else PASS


def worst(verdicts) -> str | None:
    vs = set(verdicts)
    return next((v for v in ORDER if v in vs), None)
