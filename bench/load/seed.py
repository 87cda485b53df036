"""The load test's data steps, run by the driver (bench/load/run.py) in the settings of each side.

    python -m bench.load.seed accounts --mix physician:6,nurse:5,front_desk:2,lab:3 --out PLAN.json
        Load accounts after ``seed_demo``: each a copy of a demo user of its role (same department,
        same care teams, its own password and TOTP secret), and the plan the simulated users follow
        (charts they may open, surnames and MRNs to search, open laboratory orders).
    python -m bench.load.seed quick --patients 3   a small hospital instead of seed_demo (the smoke run)
    python -m bench.load.seed mirror          (baseline settings) plaintext copies of the rows the pages show
    python -m bench.load.seed status --tag T  chart views recorded for request ids ``T-chart-*``, unsealed events

Synthetic data only: seed_demo's generated patients, in a throwaway bench database.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "healthcrypt.settings")

import django

django.setup()

from django.db import transaction

from accounts.models import TOTPDevice, User
from records.db import mark_actor
from records.management.commands.seed_demo import demo_password, demo_totp_key
from records.models import CareAssignment, Order, Patient

# Which demo user each load account copies, by role; accounts alternate between the two of a role.
TEMPLATES = {
    "physician": ("physician", "physician2"),
    "nurse": ("nurse", "nurse2"),
    "front_desk": ("front_desk",),
    "lab": ("lab",),
}


def quick(patients: int) -> None:
    """A small hospital for the smoke run (tests/bench/test_load_smoke.py): seed_demo's departments and
    the staff the load accounts copy, ``patients`` patients on their care teams with a day of vitals,
    a note and an open laboratory order each. Seconds instead of seed_demo's minute."""
    import datetime

    from django.utils import timezone

    from accounts.models import Department
    from records.management.commands.seed_demo import DEMO_USERS, DEPARTMENTS
    from records.services import care_assignment_create, note_write, observation_record, order_place, patient_register

    with transaction.atomic():
        mark_actor(None, job="bench_load_seed")
        departments = {
            code: Department.objects.create(code=code, name=name, kind=kind) for code, name, kind in DEPARTMENTS
        }
        staff = {}
        for demo in DEMO_USERS:
            if demo.username in {"physician", "physician2", "nurse", "nurse2", "lab", "front_desk"}:
                staff[demo.username] = User.objects.create_user(
                    demo.username,
                    role=demo.role,
                    department=departments[demo.department] if demo.department else None,
                    first_name=demo.first_name,
                    last_name=demo.last_name,
                )
        start = timezone.now() - datetime.timedelta(days=1)
        for number in range(patients):
            patient = patient_register(
                actor=None,
                mrn=f"HC{200000 + number}",
                given_name=f"Given{number}",
                family_name=f"Surname{number % 7}",
                birth_date=datetime.date(1950 + number % 50, 1 + number % 12, 1 + number % 28),
                sex="female",
            )
            side = number % 2
            physician, nurse = staff["physician2" if side else "physician"], staff["nurse2" if side else "nurse"]
            for member, team_role in ((physician, "attending"), (nurse, "primary_nurse")):
                care_assignment_create(actor=None, staff=member, patient=patient, team_role=team_role, starts_at=start)
            for hour in range(0, 24, 4):
                observation_record(
                    actor=nurse,
                    patient_id=patient.pk,
                    category="vital-signs",
                    display="Heart rate",
                    value=str(60 + hour),
                    unit="/min",
                    loinc_code="8867-4",
                    effective_at=start + datetime.timedelta(hours=hour),
                )
            note_write(actor=physician, patient_id=patient.pk, kind="progress", text="Stable, continue plan.")
            order_place(
                actor=physician,
                patient_id=patient.pk,
                kind="lab",
                department=departments["lab"],
                description="Glucose",
                code="2345-7",
            )
    print(f"quick hospital: {patients} patients")


def parse_mix(text: str) -> dict[str, int]:
    mix = {}
    for part in text.split(","):
        role, _, count = part.partition(":")
        mix[role.strip()] = int(count)
    return mix


def accounts(mix: dict[str, int], out: Path) -> None:
    plan: dict[str, Any] = {"accounts": [], "surnames": [], "mrns": [], "lab_orders": []}
    with transaction.atomic():
        mark_actor(None, job="bench_load_seed")
        for role, count in mix.items():
            for number in range(count):
                source = User.objects.get(username=TEMPLATES[role][number % len(TEMPLATES[role])])
                username = f"load_{role}_{number + 1:02d}"
                user = User.objects.filter(username=username).first() or User(username=username)
                user.role, user.department = source.role, source.department
                user.first_name, user.last_name = source.first_name, f"{source.last_name} {number + 1}"
                user.set_password(demo_password(username))
                user.save()
                key = demo_totp_key(username)
                TOTPDevice.objects.filter(user=user).delete()
                TOTPDevice.objects.create(user=user, name="Load test", confirmed=True, key=key)
                theirs = CareAssignment.objects.filter(staff=source, ends_at__isnull=True)
                CareAssignment.objects.filter(staff=user).delete()
                CareAssignment.objects.bulk_create(
                    CareAssignment(staff=user, patient_id=a.patient_id, team_role=a.team_role, starts_at=a.starts_at)
                    for a in theirs
                )
                plan["accounts"].append(
                    {
                        "username": username,
                        "password": demo_password(username),
                        "totp_key": key,
                        "role": role,
                        "patients": sorted(theirs.values_list("patient_id", flat=True)),
                    }
                )
    # The search terms the users type: surnames and MRNs of the seeded patients (decrypted here, once).
    patients = list(Patient.objects.order_by("id"))
    plan["surnames"] = sorted({p.family_name for p in patients})
    plan["mrns"] = [p.mrn for p in patients]
    plan["lab_orders"] = list(
        Order.objects.filter(kind=Order.Kind.LAB, status__in=Order.OPEN_STATUSES, department__code="lab")
        .order_by("id")
        .values_list("id", flat=True)
    )
    out.write_text(json.dumps(plan))
    print(f"{sum(mix.values())} load accounts, {len(patients)} patients, {len(plan['lab_orders'])} open lab orders")


def mirror() -> None:
    """Plaintext copies of every row the baseline pages show, built with the read path's own row helpers."""
    from django.db.models import Q
    from django.utils import timezone

    from bench.load.baseline import models as plain
    from records.models import (
        FREQUENCY_LABELS,
        Allergy,
        Appointment,
        Attachment,
        BreakGlassGrant,
        ClinicalNote,
        Condition,
        Encounter,
        Immunization,
        Medication,
        MedicationAdministration,
        Observation,
        Procedure,
    )
    from records.selectors import access

    plain_models = (
        plain.PlainGrant,
        plain.PlainAppointment,
        plain.PlainEvent,
        plain.PlainAttachment,
        plain.PlainAdministration,
        plain.PlainNote,
        plain.PlainObservation,
        plain.PlainOrder,
        plain.PlainMedication,
        plain.PlainAllergy,
        plain.PlainCondition,
        plain.PlainEncounter,
        plain.PlainCare,
        plain.PlainPatient,
    )
    with transaction.atomic():
        for model in plain_models:
            model.objects.all().delete()
        plain.PlainPatient.objects.bulk_create(
            plain.PlainPatient(
                id=p.pk,
                mrn=p.mrn,
                given_name=p.given_name,
                family_name=p.family_name,
                family_name_lower=p.family_name.lower(),
                birth_date=p.birth_date,
                sex=p.sex,
                is_confidential=p.is_confidential,
                registered_at=p.created_at,
            )
            for p in Patient.objects.all()
        )
        plain.PlainCare.objects.bulk_create(
            plain.PlainCare(
                staff_id=a.staff_id,
                patient_id=a.patient_id,
                staff_name=a.staff.display_name,
                staff_role=a.staff.role,
                team_role=a.get_team_role_display(),
                starts_at=a.starts_at,
                ends_at=a.ends_at,
            )
            for a in CareAssignment.objects.filter(
                Q(ends_at__isnull=True) | Q(ends_at__gt=timezone.now())
            ).select_related("staff")
        )
        plain.PlainEncounter.objects.bulk_create(
            plain.PlainEncounter(
                patient_id=e.patient_id,
                kind=e.get_kind_display(),
                status=e.get_status_display(),
                department=e.department.name if e.department else "",
                attending=access._name(e.attending),
                starts_at=e.starts_at,
                ends_at=e.ends_at,
                reason=e.reason,
                type_display=e.type_display,
                kind_code=e.kind,
                status_code=e.status,
                department_id=e.department_id,
                attending_id=e.attending_id,
                location=e.location,
            )
            for e in Encounter.objects.select_related("department", "attending")
        )
        plain.PlainCondition.objects.bulk_create(
            plain.PlainCondition(
                patient_id=c.patient_id,
                display=c.display,
                code=c.code,
                clinical_status=c.clinical_status,
                onset_date=c.onset_date,
                abatement_date=c.abatement_date,
                recorded_at=c.recorded_at,
            )
            for c in Condition.objects.all()
        )
        plain.PlainAllergy.objects.bulk_create(
            plain.PlainAllergy(
                patient_id=a.patient_id,
                substance=a.substance,
                reaction=a.reaction,
                severity=a.severity,
                code=a.code or "",
                recorded_at=a.recorded_at,
            )
            for a in Allergy.objects.all()
        )
        plain.PlainMedication.objects.bulk_create(
            plain.PlainMedication(
                id=m.pk,
                patient_id=m.patient_id,
                display=m.display,
                code=m.code,
                dosage=m.dosage,
                status=m.get_status_display(),
                prescribed_by=access._name(m.prescribed_by),
                prescribed_at=m.prescribed_at,
                allergy_override_reason=m.allergy_override_reason or "",
                frequency=FREQUENCY_LABELS.get(m.frequency or "", ""),
                status_code=m.status,
                frequency_code=m.frequency or "",
            )
            for m in Medication.objects.select_related("prescribed_by")
        )
        rows = [(o.patient_id, access._observation_row(o)) for o in Observation.objects.select_related("recorded_by")]
        plain.PlainObservation.objects.bulk_create(
            plain.PlainObservation(
                patient_id=patient_id,
                category=r.category,
                display=r.display,
                value=r.value,
                unit=r.unit,
                loinc_code=r.loinc_code,
                effective_at=r.effective_at,
                recorded_by=r.recorded_by,
                order_id=r.order_id,
                interpretation=r.interpretation,
                reference_range=r.reference_range,
            )
            for patient_id, r in rows
        )
        orders = [(o, access._order_row(o)) for o in Order.objects.select_related("department", "ordered_by")]
        plain.PlainOrder.objects.bulk_create(
            plain.PlainOrder(
                kind_code=o.kind,
                ordered_by_id=o.ordered_by_id,
                department_id=o.department_id,
                id=r.id,
                patient_id=r.patient_id,
                kind=r.kind,
                status=r.status,
                priority=r.priority,
                priority_label=r.priority_label,
                description=r.description,
                code=r.code,
                reason=r.reason,
                department=r.department,
                ordered_by=r.ordered_by,
                ordered_at=r.ordered_at,
                completed_at=r.completed_at,
            )
            for o, r in orders
        )
        notes = [(n.patient_id, access._note_row(n)) for n in ClinicalNote.objects.select_related("author")]
        plain.PlainNote.objects.bulk_create(
            plain.PlainNote(
                patient_id=patient_id,
                kind=r.kind,
                author=r.author,
                signed_at=r.signed_at,
                text=r.text,
                order_id=r.order_id,
            )
            for patient_id, r in notes
        )
        given = [
            (a.patient_id, a.medication_id, a.medication.display, a.dose, a.note, access._name(a.administered_by), a)
            for a in MedicationAdministration.objects.select_related("medication", "administered_by")
        ]
        plain.PlainAdministration.objects.bulk_create(
            plain.PlainAdministration(
                patient_id=patient_id,
                medication_id=medication_id,
                medication=medication,
                dose=dose,
                note=note,
                administered_by=by,
                administered_at=a.administered_at,
            )
            for patient_id, medication_id, medication, dose, note, by, a in given
        )
        images = [(a.patient_id, access._attachment_row(a)) for a in Attachment.objects.select_related("uploaded_by")]
        plain.PlainAttachment.objects.bulk_create(
            plain.PlainAttachment(
                id=r.id,
                patient_id=patient_id,
                kind=r.kind,
                filename=r.filename,
                content_type=r.content_type,
                description=r.description,
                size=r.size,
                uploaded_by=r.uploaded_by,
                uploaded_at=r.uploaded_at,
                order_id=r.order_id,
            )
            for patient_id, r in images
        )
        events = [
            *(
                plain.PlainEvent(patient_id=p.patient_id, kind="procedure", display=p.display, at=p.performed_at)
                for p in Procedure.objects.all()
            ),
            *(
                plain.PlainEvent(patient_id=i.patient_id, kind="immunization", display=i.display, at=i.occurred_at)
                for i in Immunization.objects.all()
            ),
        ]
        plain.PlainEvent.objects.bulk_create(events)
        appointments = list(Appointment.objects.select_related("department", "clinician"))
        plain.PlainAppointment.objects.bulk_create(
            plain.PlainAppointment(
                id=a.pk,
                patient_id=a.patient_id,
                department_id=a.department_id,
                department=a.department.name,
                clinician_id=a.clinician_id,
                clinician=access._name(a.clinician),
                starts_at=a.starts_at,
                duration_minutes=a.duration_minutes,
                reason=a.reason,
                status=a.status,
                status_label=a.get_status_display(),
                encounter_id=a.encounter_id,
            )
            for a in appointments
        )
        plain.PlainGrant.objects.bulk_create(
            plain.PlainGrant(
                id=g.pk,
                user_id=g.user_id,
                patient_id=g.patient_id,
                reason=g.reason,
                reason_label=g.get_reason_display(),
                granted_at=g.granted_at,
                expires_at=g.expires_at,
                ended_at=g.ended_at,
            )
            for g in BreakGlassGrant.objects.all()
        )
    print(
        f"mirrored {len(rows)} observations, {len(orders)} orders, {len(notes)} notes, {len(given)} administrations,"
        f" {len(images)} images, {len(events)} procedures and immunizations, {len(appointments)} appointments"
        " as plaintext"
    )


def status(tag: str, *, wait: float = 0.0, since: float = 0.0) -> None:
    """One JSON line: the chart views recorded for this run's chart request ids, and unsealed events.

    ``wait``: poll (every 0.1 s, up to ``wait`` seconds) until no event is unsealed, and report how long
    after ``since`` (a Unix time, the last request) that was.
    """
    import time

    from django.db.models import Q

    from audit.models import AccessEvent, AuthEventRecord, ChangeEvent

    def unsealed() -> int:
        return sum(m.objects.filter(Q(hash="")).count() for m in (AccessEvent, ChangeEvent, AuthEventRecord))

    deadline = time.time() + wait
    left = unsealed()
    while left and time.time() < deadline:
        time.sleep(0.1)
        left = unsealed()
    sealed_at = time.time()
    judging: dict[str, Any] = {}
    try:
        from audit.detection.nearline import rules_at, unjudged
    except ImportError:  # a commit from before the rules could run at the sealer
        pass
    else:
        from audit.models import AlertSubject, RuleFailure

        judging["rules_at"] = rules_at()
        if judging["rules_at"] == "sealer":
            pending = unjudged().count()
            while pending and time.time() < deadline:
                time.sleep(0.1)
                pending = unjudged().count()
            judging.update(
                unjudged=pending,
                judged_after=round(time.time() - since, 2) if since and not pending and not left else None,
                access_alerts=AlertSubject.objects.filter(kind="access").count(),
                rule_failures=RuleFailure.objects.count(),
            )
    charts = AccessEvent.objects.filter(request_id__startswith=f"{tag}-chart-")
    result = {
        "chart_events": charts.count(),
        "chart_views": charts.values("request_id").distinct().count(),
        # One event per view (issue 11) once the event lists the sections it showed.
        "one_event_per_view": any(f.name == "sections" for f in AccessEvent._meta.get_fields()),
        "unsealed": left,
        "sealed_after": round(sealed_at - since, 2) if since and not left else None,
        **judging,
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["quick", "accounts", "mirror", "status"])
    parser.add_argument("--patients", type=int, default=3)
    parser.add_argument("--mix", default="physician:6,nurse:5,front_desk:2,lab:3")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--tag", default="")
    parser.add_argument("--wait", type=float, default=0.0)
    parser.add_argument("--since", type=float, default=0.0)
    args = parser.parse_args()
    if args.step == "quick":
        quick(args.patients)
    elif args.step == "accounts":
        if args.out is None:
            sys.exit("--out is required")
        accounts(parse_mix(args.mix), args.out)
    elif args.step == "mirror":
        mirror()
    else:
        status(args.tag, wait=args.wait, since=args.since)


if __name__ == "__main__":
    main()
