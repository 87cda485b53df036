"""The capability table of DESIGN.md §3, as data, and its small API."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser

from accounts.models import User
from accounts.roles import (
    OPERATOR_CAPABILITIES,
    ROLE_POLICIES,
    Capability,
    ChartAccess,
    Role,
    capabilities_for,
    has_capability,
    policy_for,
    roles_with,
)

# DESIGN.md §3, column "clinical chart".
EXPECTED_CHART_ACCESS = {
    Role.PHYSICIAN: ChartAccess.CARE_TEAM,
    Role.NURSE: ChartAccess.CARE_TEAM_OR_WARD,
    Role.RADIOLOGY: ChartAccess.OPEN_ORDER,
    Role.LAB: ChartAccess.OPEN_ORDER,
    Role.FRONT_DESK: ChartAccess.DEMOGRAPHICS_ONLY,
    Role.EMS: ChartAccess.BREAK_GLASS_ONLY,
    Role.COMPLIANCE: ChartAccess.NONE,
    Role.SECURITY: ChartAccess.NONE,
    Role.RESEARCHER: ChartAccess.NONE,
    Role.PATIENT: ChartAccess.OWN_RECORD,
}

CLINICAL_WORK = {
    Capability.VIEW_CHART,
    Capability.WRITE_NOTE,
    Capability.PLACE_ORDER,
    Capability.PRESCRIBE,
    Capability.RECORD_VITALS,
    Capability.ADMINISTER_MEDICATION,
    Capability.ENTER_RESULT,
    Capability.UPLOAD_IMAGE,
}


def test_every_role_has_exactly_one_policy() -> None:
    assert set(ROLE_POLICIES) == set(Role)


@pytest.mark.parametrize("role", list(Role))
def test_chart_access_matches_the_design(role: Role) -> None:
    assert ROLE_POLICIES[role].chart_access == EXPECTED_CHART_ACCESS[role]


@pytest.mark.parametrize("role", [Role.FRONT_DESK, Role.COMPLIANCE, Role.SECURITY, Role.RESEARCHER, Role.PATIENT])
def test_non_clinical_roles_hold_no_clinical_capability(role: Role) -> None:
    assert not ROLE_POLICIES[role].capabilities & CLINICAL_WORK


def test_only_clinicians_may_break_the_glass_and_only_researchers_see_deidentified_data() -> None:
    # DESIGN.md §8 and issue 9: ems, and physicians and nurses by default, as a fallback.
    assert roles_with("break_glass") == [Role.PHYSICIAN, Role.NURSE, Role.EMS]
    assert roles_with(Capability.VIEW_DEIDENTIFIED) == [Role.RESEARCHER]
    assert roles_with(Capability.ADMIN_SITE) == [Role.COMPLIANCE]


def test_only_researchers_request_datasets_and_only_compliance_approves_them() -> None:
    # Issue 13: the one who asks for a dataset is never the one who approves and builds it.
    assert roles_with(Capability.REQUEST_DATASET) == [Role.RESEARCHER]
    assert roles_with(Capability.APPROVE_DATASET) == [Role.COMPLIANCE]
    assert ROLE_POLICIES[Role.RESEARCHER].chart_access == "none"
    assert not ROLE_POLICIES[Role.RESEARCHER].categories


def test_only_front_desk_registers_patients() -> None:
    assert roles_with(Capability.REGISTER_PATIENT) == [Role.FRONT_DESK]


def test_has_capability_reads_the_table() -> None:
    nurse = User(username="n", role=Role.NURSE, is_active=True)
    assert has_capability(nurse, "record_vitals")
    assert not has_capability(nurse, Capability.PRESCRIBE)
    assert capabilities_for(nurse) == ROLE_POLICIES[Role.NURSE].capabilities
    assert policy_for(nurse) is ROLE_POLICIES[Role.NURSE]


def test_unknown_capability_name_raises_instead_of_silently_denying() -> None:
    user = User(username="p", role=Role.PHYSICIAN, is_active=True)
    with pytest.raises(ValueError, match="view_chrat"):
        has_capability(user, "view_chrat")


def test_anonymous_and_inactive_users_have_nothing() -> None:
    assert capabilities_for(AnonymousUser()) == frozenset()
    inactive = User(username="x", role=Role.PHYSICIAN, is_active=False)
    assert capabilities_for(inactive) == frozenset()
    assert policy_for(inactive) is None


def test_superuser_without_role_is_an_operator_with_no_clinical_capability() -> None:
    operator = User(username="ops", role="", is_active=True, is_superuser=True)
    assert capabilities_for(operator) == OPERATOR_CAPABILITIES
    assert not has_capability(operator, Capability.VIEW_CHART)
    assert has_capability(operator, Capability.ADMIN_SITE)


def test_unknown_stored_role_grants_nothing() -> None:
    user = User(username="x", role="wizard", is_active=True)
    assert capabilities_for(user) == frozenset()
