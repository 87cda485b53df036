"""Create the demo hospital: departments, one user per role (with a TOTP authenticator), ~200
synthetic patients, care teams.

Idempotent and deterministic: Faker runs with a fixed seed, patients are matched by MRN through
the blind index, and a second run creates nothing new. Demo passwords are derived from the
installation's SECRET_KEY, so they are stable for one installation and differ between installations.
Refuses to run with DEBUG off unless --force: it creates accounts with printed passwords.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import io
import json
from dataclasses import dataclass
from typing import Any, TypedDict

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from faker import Faker

from accounts.models import Department, TOTPDevice, User
from accounts.roles import Role
from records.crypto import mrn_index
from records.db import mark_actor
from records.demo_clinical import seed_appointments, seed_clinical
from records.models import CareAssignment, Patient
from records.services import care_assignment_create, patient_register

FAKER_SEED = 20261121
DEFAULT_PATIENTS = 200
ASSIGNMENT_START = datetime.datetime(2026, 1, 5, 8, 0, tzinfo=datetime.UTC)

DEPARTMENTS: tuple[tuple[str, str, Department.Kind], ...] = (
    ("ward-medicine", "Internal Medicine Ward", Department.Kind.WARD),
    ("ward-surgery", "Surgical Ward", Department.Kind.WARD),
    ("emergency", "Emergency Department", Department.Kind.EMERGENCY),
    ("radiology", "Radiology", Department.Kind.RADIOLOGY),
    ("lab", "Clinical Laboratory", Department.Kind.LAB),
    ("outpatient", "Outpatient Clinic", Department.Kind.OUTPATIENT),
    ("administration", "Administration", Department.Kind.ADMINISTRATION),
)


class DemoProfile(TypedDict):
    """One generated patient's demographics, as patient_register takes them."""

    mrn: str
    given_name: str
    family_name: str
    birth_date: datetime.date
    sex: str
    address_line: str
    city: str
    postal_code: str
    phone: str
    email: str


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: Role
    department: str | None
    first_name: str
    last_name: str


# Staff names are fictional and are not patient data.
DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("physician", Role.PHYSICIAN, "ward-medicine", "Ada", "Okafor"),
    DemoUser("physician2", Role.PHYSICIAN, "ward-surgery", "Tomas", "Lindqvist"),
    DemoUser("nurse", Role.NURSE, "ward-medicine", "Grace", "Mwangi"),
    DemoUser("nurse2", Role.NURSE, "ward-surgery", "Luis", "Ortega"),
    DemoUser("radiology", Role.RADIOLOGY, "radiology", "Mei", "Tanaka"),
    DemoUser("lab", Role.LAB, "lab", "Samir", "Haddad"),
    DemoUser("front_desk", Role.FRONT_DESK, "administration", "Olivia", "Brennan"),
    DemoUser("ems", Role.EMS, "emergency", "Jonah", "Price"),
    DemoUser("compliance", Role.COMPLIANCE, "administration", "Priya", "Raman"),
    DemoUser("security", Role.SECURITY, "administration", "Erik", "Vos"),
    DemoUser("researcher", Role.RESEARCHER, None, "Nadia", "Kowalski"),
    DemoUser("patient", Role.PATIENT, None, "", ""),
)


def _demo_secret(label: str) -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), f"seed_demo:{label}".encode(), hashlib.sha256).digest()


def demo_password(username: str) -> str:
    """A readable password for a demo user, stable for this installation's SECRET_KEY."""
    text = base64.b32encode(_demo_secret(username)).decode("ascii").lower()[:16]
    return "-".join(text[i : i + 4] for i in range(0, 16, 4))


def demo_totp_key(username: str) -> str:
    """The demo user's TOTP secret (hex, 20 bytes), stable for this installation's SECRET_KEY."""
    return _demo_secret(f"totp:{username}")[:20].hex()


class Command(BaseCommand):
    help = "Create or refresh the demo hospital (idempotent). Prints each demo user's credentials."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the credentials as JSON.")
        parser.add_argument("--force", action="store_true", help="Run even with DEBUG off (never on real data).")
        parser.add_argument(
            "--patients", type=int, default=DEFAULT_PATIENTS, help=f"Number of patients (default {DEFAULT_PATIENTS})."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "seed_demo creates accounts with known passwords and refuses to run with DEBUG off. "
                "Use --force only on a throwaway installation."
            )
        count = options["patients"]
        if not 1 <= count <= 10_000:
            raise CommandError("--patients must be between 1 and 10000.")

        with transaction.atomic():
            mark_actor(None, job="seed_demo")
            departments = self._departments()
            users = self._users(departments)
            created_patients, patients = self._patients(count)
            created_assignments = self._assignments(users, patients)
            self._link_portal_user(users["patient"], patients[0])
            clinical = seed_clinical(
                patients=patients, users=users, departments=departments, max_bytes=settings.ATTACHMENT_MAX_BYTES
            )
            appointments = seed_appointments(patients=patients, users=users, departments=departments)
            # Weeks of audit history, a past emergency grant and alerts, for the security dashboard.
            # Called by name: records never imports audit (DESIGN.md §2); it is written once.
            history = io.StringIO()
            call_command("seed_demo_history", "--force", stdout=history)

        credentials = []
        for demo in DEMO_USERS:
            device = TOTPDevice.objects.get(user=users[demo.username], confirmed=True)
            credentials.append(
                {
                    "username": demo.username,
                    "password": demo_password(demo.username),
                    "role": demo.role.value,
                    "department": demo.department,
                    "totp_secret": device.base32_secret,
                    "otpauth_uri": device.config_url,
                }
            )
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "users": credentials,
                        "patients": len(patients),
                        "created": {
                            "patients": created_patients,
                            "assignments": created_assignments,
                            "encounters": clinical.encounters,
                            "observations": clinical.observations,
                            "orders": clinical.orders,
                            "notes": clinical.notes,
                            "images": clinical.images,
                            "doses": clinical.doses,
                            "procedures": clinical.procedures,
                            "immunizations": clinical.immunizations,
                            "appointments": appointments,
                        },
                    },
                    indent=2,
                )
            )
            return
        self.stdout.write(
            f"Demo hospital ready: {len(patients)} patients ({created_patients} new), "
            f"{created_assignments} new care-team assignments, {clinical.encounters} admissions, "
            f"{clinical.observations} observations, {clinical.orders} orders, {clinical.images} images, "
            f"{clinical.doses} doses given, {clinical.procedures} past procedures, "
            f"{clinical.immunizations} immunizations, "
            f"{appointments} appointments booked for today."
        )
        self.stdout.write(history.getvalue().strip())
        self.stdout.write("Demo users (throwaway credentials for this installation only):")
        self.stdout.write(f"  {'username':<12} {'password':<20} {'TOTP secret (add to an authenticator app)':<34}")
        for row in credentials:
            self.stdout.write(f"  {row['username']:<12} {row['password']:<20} {row['totp_secret']}")
        self.stdout.write("otpauth URIs (for QR generators or `oathtool`):")
        for row in credentials:
            self.stdout.write(f"  {row['otpauth_uri']}")
        # demo_code refuses to run with DEBUG off, so the hint names the command that works.
        self.stdout.write(
            "No authenticator at hand? `DEBUG=1 .venv/bin/python manage.py demo_code USERNAME` prints the current code."
        )

    def _departments(self) -> dict[str, Department]:
        result = {}
        for code, name, kind in DEPARTMENTS:
            department, _ = Department.objects.update_or_create(code=code, defaults={"name": name, "kind": kind})
            result[code] = department
        return result

    def _users(self, departments: dict[str, Department]) -> dict[str, User]:
        result = {}
        for demo in DEMO_USERS:
            user = User.objects.filter(username=demo.username).first() or User(username=demo.username)
            user.role = demo.role
            user.department = departments[demo.department] if demo.department else None
            user.first_name = demo.first_name
            user.last_name = demo.last_name
            user.is_active = True
            user.is_superuser = False
            # Only compliance officers use the admin (the admin site also checks the role table).
            user.is_staff = demo.role == Role.COMPLIANCE
            user.set_password(demo_password(demo.username))
            user.full_clean()
            user.save()
            self._totp_device(user)
            result[demo.username] = user
        return result

    def _totp_device(self, user: User) -> TOTPDevice:
        key = demo_totp_key(user.username)
        device = TOTPDevice.objects.filter(user=user, confirmed=True).order_by("id").first()
        if device is None:
            return TOTPDevice.objects.create(user=user, name="Demo authenticator", confirmed=True, key=key)
        if device.key != key:
            device.key = key
            device.last_t = -1
            device.save(update_fields=["key", "last_t"])
        return device

    def _patients(self, count: int) -> tuple[int, list[Patient]]:
        fake = Faker("en_US")
        fake.seed_instance(FAKER_SEED)
        created = 0
        patients = []
        for number in range(1, count + 1):
            # Draw every value even for existing patients, so the sequence stays deterministic.
            sex = fake.random_element(["female", "male"])
            given = fake.first_name_female() if sex == "female" else fake.first_name_male()
            profile: DemoProfile = {
                "mrn": f"HC{100000 + number}",
                "given_name": given,
                "family_name": fake.last_name(),
                "birth_date": fake.date_of_birth(minimum_age=0, maximum_age=95),
                "sex": sex,
                "address_line": fake.street_address(),
                "city": fake.city(),
                "postal_code": fake.postcode(),
                "phone": fake.numerify("555-###-####"),
                "email": fake.free_email(),
            }
            existing = Patient.objects.only("id", "portal_user").filter(mrn_index=mrn_index(profile["mrn"])).first()
            if existing is None:
                existing = patient_register(actor=None, **profile)
                created += 1
            patients.append(existing)
        return created, patients

    def _assignments(self, users: dict[str, User], patients: list[Patient]) -> int:
        physicians = [users["physician"], users["physician2"]]
        nurses = [users["nurse"], users["nurse2"]]
        existing = set(
            CareAssignment.objects.filter(patient__in=patients, ends_at__isnull=True).values_list(
                "staff_id", "patient_id", "team_role"
            )
        )
        created = 0
        for index, patient in enumerate(patients):
            # Every fourth patient has no care team yet (newly registered, waiting for admission),
            # so the demo shows charts that a clinician may *not* open too.
            if index % 4 == 3:
                continue
            team = [
                (physicians[index % 2], CareAssignment.TeamRole.ATTENDING),
                (nurses[index % 2], CareAssignment.TeamRole.PRIMARY_NURSE),
            ]
            for staff, team_role in team:
                if (staff.pk, patient.pk, team_role.value) in existing:
                    continue
                care_assignment_create(
                    actor=None,
                    staff=staff,
                    patient=patient,
                    team_role=team_role,
                    starts_at=ASSIGNMENT_START + datetime.timedelta(hours=index),
                )
                created += 1
        return created

    def _link_portal_user(self, user: User, patient: Patient) -> None:
        if patient.portal_user_id != user.pk:
            Patient.objects.filter(portal_user=user).exclude(pk=patient.pk).update(portal_user=None)
            patient.portal_user = user
            patient.save(update_fields=["portal_user"])
