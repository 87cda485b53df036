"""HL7 v2 ingest: every shared sample answered right, tolerance, atomicity, duplicates, encryption at rest."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection

from accounts.models import Department, User
from audit.models import ChangeEvent
from exchange.hl7.ingest import Outcome, ingest_bytes
from exchange.models import HL7Message
from records.models import Encounter, Observation, Order, Patient
from records.services import interface_encounter_open
from tests.exchange.hl7.conftest import registered, sample

pytestmark = pytest.mark.django_db

ADT_A04 = (
    "MSH|^~\\&|REG|NORTH|HC|HOSP|20240105101500||ADT^A04^ADT_A01|{control}|P|2.5.1\r"
    "EVN|A04|20240105101500\r"
    "PID|1||{mrn}^^^HOSP^MR||Quixote^Alonso^M||19700302|M|||12 Mill Lane^^La Mancha^^12345||555-0100\r"
    "PV1|1|O\r"
)
ORU_R01 = (
    "MSH|^~\\&|LIS|LAB|HC|HOSP|20240105120000||ORU^R01^ORU_R01|{control}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||Quixote^Alonso\r"
    "OBR|1|P1|F1|24331-1^Lipid panel^LN|||20240105110000\r"
    "OBX|1|NM|2823-3^Potassium^LN||{potassium}|mmol/L|3.5-5.1||||F|||20240105113000\r"
    "OBX|2|ST|5778-6^Color of Urine^LN||Straw|||N|||F\r"
)


def ingest(text: str | bytes, actor: User) -> list[Outcome]:
    data = text.encode() if isinstance(text, str) else text
    return ingest_bytes(data, actor=actor, channel=HL7Message.Channel.FILE)


def codes(outcomes: list[Outcome]) -> list[str]:
    return [outcome.ack_code for outcome in outcomes]


# --- Every shared sample ----------------------------------------------------------------------------


def _nothing(departments: dict[str, Department]) -> None:
    return None


def _admitted(departments: dict[str, Department]) -> None:
    patient_id = registered("PATID1234")
    interface_encounter_open(actor=User.objects.get(username="hl7-interface"), patient_id=patient_id, kind="inpatient")


SHARED: list[tuple[str, Callable[[dict[str, Department]], object], list[str]]] = [
    ("ADT-A01-01.hl7", _nothing, ["AA"]),
    ("ADT-A03-01.hl7", _admitted, ["AA"]),
    ("ADT-A08-01.hl7", _nothing, ["AA"]),
    ("ADT04-251.hl7", _nothing, ["AA"]),
    # Both messages name the patient "XXXXXXXXXX" with no given name (PID-5.2): refused, each on its own.
    ("ADT-A04_batch_BHS-BTS_2msgs.hl7", _nothing, ["AE", "AE"]),
    ("LAB-ORU-1.hl7", lambda d: registered("10006579"), ["AA"]),
    # OBX 2 sends haemoglobin 12.5 "g/mL" (the test's unit is g/dL): a unit error the result check refuses.
    ("LRI_2.0-NG_CBC_Typ_Message.hl7", lambda d: registered("PATID1234"), ["AE"]),
    ("ORM-O01-01.hl7", lambda d: registered("PATID1234"), ["AA"]),
    ("ORU-R01-01.hl7", lambda d: registered("14"), ["AA"]),
    ("ORU-R01_hl7-normative-glucose.hl7", lambda d: registered("555-44-4444"), ["AA"]),
    ("MDM-T02-01.hl7", _nothing, ["AR"]),
    ("SIU-S12-01.hl7", _nothing, ["AR"]),
]


@pytest.mark.parametrize(("name", "prepare", "expected"), SHARED, ids=[row[0] for row in SHARED])
def test_every_shared_sample_gets_the_right_ack(
    interface: User,
    departments: dict[str, Department],
    name: str,
    prepare: Callable[[dict[str, Department]], object],
    expected: list[str],
) -> None:
    data = sample(name)
    prepare(departments)
    outcomes = ingest(data, interface)
    assert codes(outcomes) == expected
    for outcome in outcomes:
        msa = next(line for line in outcome.ack.split("\r") if line.startswith("MSA|"))
        assert msa.split("|")[1:3] == [outcome.ack_code, outcome.control_id]
        assert outcome.control_id  # every sample has an MSH-10
        if outcome.ack_code != "AA":
            assert "\rERR|" in outcome.ack
    assert HL7Message.objects.count() == len(expected)


def test_the_shared_batch_gives_one_ack_per_message(interface: User) -> None:
    outcomes = ingest(sample("ADT-A04_batch_BHS-BTS_2msgs.hl7"), interface)
    assert [o.control_id for o in outcomes] == ["12334456778890", "12334456778891"]
    assert all("\rMSA|AE|" in o.ack and "PID^1^5" in o.ack for o in outcomes)


def test_a_batch_with_good_messages_is_applied_message_by_message(interface: User) -> None:
    batch = (
        "FHS|^~\\&|REG\rBHS|^~\\&|REG\r"
        + ADT_A04.format(control="B1", mrn="M-1")
        + ADT_A04.format(control="B2", mrn="M-2")
    )
    batch += "MSH|^~\\&|REG|NORTH|HC|HOSP|20240105||ADT^A04|B3|P|2.5\rPID|1||M-3^^^HOSP^MR||Solo\rBTS|3\rFTS|1\r"
    outcomes = ingest(batch, interface)
    assert codes(outcomes) == ["AA", "AA", "AE"]
    # The third one's error undid only the third one.
    assert Patient.objects.count() == 2


def test_the_ack_mirrors_sender_and_receiver_and_names_the_control_id(interface: User) -> None:
    outcome = ingest(ADT_A04.format(control="ACK-1", mrn="M-40"), interface)[0]
    msh, msa_segment = outcome.ack.split("\r")[:2]
    fields = msh.split("|")
    # The message came from REG/NORTH to HC/HOSP; the answer goes from HC/HOSP to REG/NORTH.
    assert fields[2:6] == ["HC", "HOSP", "REG", "NORTH"]
    assert (fields[8], fields[10], fields[11]) == ("ACK^A04^ACK", "P", "2.5.1")
    assert fields[9] != "ACK-1"
    assert msa_segment.startswith("MSA|AA|ACK-1|")


def test_adt_a01_registers_admits_and_names_the_interface_in_change_events(interface: User) -> None:
    outcome = ingest(sample("ADT-A01-01.hl7"), interface)[0]
    assert outcome.ack_code == "AA"
    patient = Patient.objects.get()
    assert (patient.family_name, patient.given_name, str(patient.birth_date), patient.sex) == (
        "EVERYMAN",
        "ADAM",
        "1988-08-18",
        "male",
    )
    encounter = Encounter.objects.get(patient=patient)
    assert (encounter.kind, encounter.status) == (Encounter.Kind.INPATIENT, Encounter.Status.IN_PROGRESS)
    events = ChangeEvent.objects.filter(patient_id=patient.pk)
    assert {(e.category, e.action) for e in events} == {("demographics", "create"), ("encounters", "create")}
    assert {e.actor_username for e in events} == {"hl7-interface"}


def test_adt_a08_updates_the_registration_found_by_mrn(interface: User) -> None:
    registered("PATID1234", given_name="Adam", family_name="Old")
    assert codes(ingest(sample("ADT-A08-01.hl7"), interface)) == ["AA"]
    patient = Patient.objects.get()
    assert patient.family_name == "EVERYMAN"
    update = ChangeEvent.objects.get(patient_id=patient.pk, action="update")
    assert "family_name" in update.fields
    assert update.actor_username == "hl7-interface"


def test_adt_a03_closes_the_open_stay(interface: User) -> None:
    _admitted({})
    assert codes(ingest(sample("ADT-A03-01.hl7"), interface)) == ["AA"]
    assert Encounter.objects.get().status == Encounter.Status.FINISHED


def test_results_become_observations_with_loinc_codes_and_change_events(interface: User) -> None:
    patient_id = registered("10006579")
    assert codes(ingest(sample("LAB-ORU-1.hl7"), interface)) == ["AA"]
    observations = Observation.objects.filter(patient_id=patient_id)
    by_code = {o.loinc_code: o for o in observations}
    # OBX 1 and 3 are pending (OBX-11 I, no value): not results yet.
    assert "11156-7" not in by_code
    assert "20509-6" not in by_code
    assert (by_code["11273-0"].value, by_code["11273-0"].unit, by_code["11273-0"].status) == (
        "4.06",
        "tera.l-1",
        Observation.Status.PRELIMINARY,
    )
    assert by_code["11125-2"].status == Observation.Status.FINAL
    events = ChangeEvent.objects.filter(patient_id=patient_id, category="observations", action="create")
    assert events.count() == observations.count() > 0
    assert {e.actor_username for e in events} == {"hl7-interface"}
    assert sorted(e.object_id for e in events) == sorted(o.pk for o in observations)


def test_a_known_test_is_checked_and_flagged_like_a_result_typed_in(interface: User) -> None:
    patient_id = registered("M-7")
    assert codes(ingest(ORU_R01.format(control="K1", mrn="M-7", potassium="6.5"), interface)) == ["AA"]
    by_code = {o.loinc_code: o for o in Observation.objects.filter(patient_id=patient_id)}
    assert (by_code["2823-3"].value, by_code["2823-3"].interpretation) == ("6.5", "HH")
    assert (by_code["5778-6"].value, by_code["5778-6"].interpretation) == ("Straw", "N")


def test_an_implausible_value_is_an_error_and_nothing_of_the_message_is_written(interface: User) -> None:
    patient_id = registered("M-8")
    outcome = ingest(ORU_R01.format(control="K2", mrn="M-8", potassium="99"), interface)[0]
    assert outcome.ack_code == "AE"
    assert "OBX^1^5" in outcome.ack
    assert not Observation.objects.filter(patient_id=patient_id).exists()
    assert not ChangeEvent.objects.filter(patient_id=patient_id, category="observations").exists()
    stored = HL7Message.objects.get()
    assert (stored.status, stored.ack_code) == (HL7Message.Status.ERROR, "AE")


def test_results_for_an_unknown_mrn_are_an_error(interface: User) -> None:
    outcome = ingest(ORU_R01.format(control="K3", mrn="NOBODY", potassium="4"), interface)[0]
    assert outcome.ack_code == "AE"
    assert "\rERR|PID^1^3^204" in outcome.ack
    assert not Patient.objects.exists()
    assert not Observation.objects.exists()


def test_orm_places_an_imaging_order_on_the_radiology_worklist(
    interface: User, departments: dict[str, Department]
) -> None:
    patient_id = registered("PATID1234")
    assert codes(ingest(sample("ORM-O01-01.hl7"), interface)) == ["AA"]
    order = Order.objects.get(patient_id=patient_id)
    assert (order.kind, order.department, order.code, order.description, order.ordered_by) == (
        Order.Kind.RADIOLOGY,
        departments["radiology"],
        "24725-4",
        "CT Head",
        interface,
    )


def test_an_order_without_a_department_to_receive_it_is_an_error(interface: User) -> None:
    registered("PATID1234")
    outcome = ingest(sample("ORM-O01-01.hl7"), interface)[0]
    assert outcome.ack_code == "AE"
    assert not Order.objects.exists()


# --- Tolerance ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("separator", ["\r", "\n", "\r\n"], ids=["CR", "LF", "CRLF"])
def test_any_segment_separator_is_read(interface: User, separator: str) -> None:
    text = ADT_A04.format(control="S1", mrn="M-9").replace("\r", separator)
    assert codes(ingest(text, interface)) == ["AA"]
    assert Patient.objects.get().given_name == "Alonso"


def test_a_byte_order_mark_and_blank_lines_are_ignored(interface: User) -> None:
    text = "\ufeff" + ADT_A04.format(control="S2", mrn="M-10").replace("\r", "\n\n")
    assert codes(ingest(text.encode("utf-8"), interface)) == ["AA"]


def test_lf_only_and_bom_samples_are_read(interface: User) -> None:
    data = sample("ADT04-251.hl7")
    assert data.startswith(b"\xef\xbb\xbf")
    assert b"\r" not in data
    assert codes(ingest(data, interface)) == ["AA"]
    assert Encounter.objects.get().kind == Encounter.Kind.EMERGENCY


@pytest.mark.parametrize("version", ["2.3", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"])
def test_versions_2_3_to_2_8_are_accepted(interface: User, version: str) -> None:
    text = ADT_A04.format(control="V1", mrn="M-11").replace("|P|2.5.1", f"|P|{version}")
    assert codes(ingest(text, interface)) == ["AA"]


def test_another_version_is_rejected(interface: User) -> None:
    text = ADT_A04.format(control="V2", mrn="M-12").replace("|P|2.5.1", "|P|2.2")
    outcome = ingest(text, interface)[0]
    assert outcome.ack_code == "AR"
    assert "|203^" in outcome.ack
    assert not Patient.objects.exists()


# --- Duplicates ---------------------------------------------------------------------------------------


def test_a_resent_message_is_acknowledged_again_without_being_applied_twice(interface: User) -> None:
    registered("M-13")
    text = ORU_R01.format(control="D1", mrn="M-13", potassium="4.0")
    first, second = ingest(text, interface)[0], ingest(text, interface)[0]
    assert (first.ack_code, second.ack_code) == ("AA", "AA")
    assert "Duplicate" in second.text
    assert Observation.objects.count() == 2
    assert list(HL7Message.objects.order_by("id").values_list("status", flat=True)) == ["accepted", "duplicate"]


def test_the_same_control_id_on_a_different_message_is_an_error(interface: User) -> None:
    registered("M-14")
    ingest(ORU_R01.format(control="D2", mrn="M-14", potassium="4.0"), interface)
    outcome = ingest(ORU_R01.format(control="D2", mrn="M-14", potassium="4.4"), interface)[0]
    assert outcome.ack_code == "AE"
    assert "|205^" in outcome.ack
    assert Observation.objects.count() == 2


def test_a_message_refused_before_may_be_sent_again_once_corrected(interface: User) -> None:
    registered("M-15")
    assert codes(ingest(ORU_R01.format(control="D3", mrn="M-15", potassium="99"), interface)) == ["AE"]
    assert codes(ingest(ORU_R01.format(control="D3", mrn="M-15", potassium="4.1"), interface)) == ["AA"]


# --- Malformed input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", "AR"),
        ("garbage that is not HL7", "AR"),
        ("PID|1||X\r", "AR"),
        ("MSH|^~\\&|A|B|C|D|20240101||ADT^A04|\rPID|1||X^^^^MR||A^B||19700101|M\r", "AR"),  # no MSH-10
        ("MSH|^~\\&|A|B|C|D|20240101||ADT^A99|C1|P|2.5\r", "AR"),  # unsupported trigger
        ("MSH|^~\\&|A|B|C|D|20240101||ADT^A04|C2|P|2.5\r", "AE"),  # no PID
        ("MSH|^~\\&|A|B|C|D|20240101||ADT^A04|C3|P|2.5\rPID|1||X^^^^MR||A^B||1970|M\r", "AE"),  # partial DOB
        ("MSH|^~\\&|A|B|C|D|20240101||ADT^A04|C4|P|2.5\rPID|1||X^^^^MR||A^B||19701399|M\r", "AE"),
        ("MSH|^~\\&|A|B|C|D|20240101||ADT^A04|C5|P|2.5\rPID|1||X^^^^MR||A^B||19700101|Q\r", "AE"),  # sex
        ("MSH#^~\\&#A#B#C#D#20240101##ADT^A04#C6#P#2.5\r", "AR"),  # other delimiters
    ],
)
def test_a_malformed_message_is_answered_and_nothing_is_written(interface: User, text: str, code: str) -> None:
    outcomes = ingest(text, interface)
    assert codes(outcomes) == [code]
    assert "\rERR|" in outcomes[0].ack
    assert not Patient.objects.exists()
    assert not ChangeEvent.objects.exists()


def test_errors_never_quote_patient_values(interface: User) -> None:
    text = "MSH|^~\\&|A|B|C|D|20240101||ADT^A04|C7|P|2.5\rPID|1||SECRETMRN^^^^MR||Zebedee^Quill||19701399|M\r"
    outcome = ingest(text, interface)[0]
    stored = HL7Message.objects.get()
    for value in ("SECRETMRN", "Zebedee", "Quill", "19701399"):
        assert value not in outcome.ack
        assert value not in stored.error


def test_a_too_long_value_is_refused_by_field_name_only(interface: User) -> None:
    text = ADT_A04.format(control="L1", mrn="M-16").replace("Alonso", "A" * 150)
    outcome = ingest(text, interface)[0]
    assert outcome.ack_code == "AE"
    assert "given name" in outcome.text
    assert "AAAA" not in outcome.ack


def test_a_message_over_the_size_limit_is_rejected(interface: User, settings: object) -> None:
    settings.HL7_MAX_MESSAGE_BYTES = 1024  # type: ignore[attr-defined]
    text = ADT_A04.format(control="L2", mrn="M-17") + "NTE|1||" + "x" * 2000 + "\r"
    outcome = ingest(text, interface)[0]
    assert outcome.ack_code == "AR"
    assert not Patient.objects.exists()
    assert HL7Message.objects.get().raw == ""


def test_only_the_hospitals_assigning_authority_names_the_mrn(interface: User, settings: object) -> None:
    settings.HL7_ASSIGNING_AUTHORITIES = ["HOSP"]  # type: ignore[attr-defined]
    text = "MSH|^~\\&|A|B|C|D|20240101||ADT^A04|A1|P|2.5\rPID|1||OTHER-1^^^ELSEWHERE^MR~OURS-1^^^HOSP^MR||A^B||19700101|F\r"
    assert codes(ingest(text, interface)) == ["AA"]
    assert Patient.objects.get().mrn == "OURS-1"
    foreign = text.replace("~OURS-1^^^HOSP^MR", "").replace("|A1|", "|A2|")
    assert codes(ingest(foreign, interface)) == ["AE"]


# --- Storage ------------------------------------------------------------------------------------------


def test_raw_sql_shows_no_plaintext_of_the_patient_in_the_message_table(interface: User) -> None:
    ingest(ADT_A04.format(control="E1", mrn="MRN-SECRET-1"), interface)
    stored = HL7Message.objects.get()
    assert "Quixote" in stored.raw  # the model decrypts it
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM exchange_hl7message")
        row = " ".join(str(column) for column in cursor.fetchone())
    for value in ("Quixote", "Alonso", "MRN-SECRET-1", "19700302", "Mill Lane"):
        assert value not in row
    assert "E1" in row  # the control id stays searchable


def test_a_copied_raw_message_does_not_decrypt_in_another_row(interface: User) -> None:
    ingest(ADT_A04.format(control="E2", mrn="M-18"), interface)
    ingest(ADT_A04.format(control="E3", mrn="M-19"), interface)
    first, second = HL7Message.objects.order_by("id")
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE exchange_hl7message SET raw = (SELECT raw FROM exchange_hl7message WHERE id = %s) WHERE id = %s",
            [first.pk, second.pk],
        )
    from healthcrypt.crypto import DecryptionError

    with pytest.raises(DecryptionError):
        _ = HL7Message.objects.get(pk=second.pk).raw


# --- Failures of ours ---------------------------------------------------------------------------------


def test_an_account_that_gained_a_password_is_refused_and_nothing_is_written(interface: User) -> None:
    interface.set_password("now someone could sign in 42")
    interface.save()
    outcome = ingest(ADT_A04.format(control="F1", mrn="M-30"), interface)[0]
    assert outcome.ack_code == "AE"
    assert "interface service account" in outcome.text
    assert not Patient.objects.exists()


def test_an_unexpected_error_is_an_ae_without_details_and_nothing_is_written(
    interface: User, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from exchange.hl7 import handlers

    def explode(message: object, actor: object) -> None:
        raise RuntimeError("Quixote Alonso 19700302")  # an exception text quoting patient data

    monkeypatch.setitem(handlers.HANDLERS, ("ADT", "A04"), explode)
    outcome = ingest(ADT_A04.format(control="F2", mrn="M-31"), interface)[0]
    assert outcome.ack_code == "AE"
    assert "|207^" in outcome.ack
    assert "Quixote" not in outcome.ack
    assert "Quixote" not in caplog.text
    assert "RuntimeError" in caplog.text
    assert not Patient.objects.exists()


def test_a_copy_accepted_meanwhile_makes_the_race_loser_a_duplicate(
    interface: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two copies of one message at once: both pass the duplicate check, the second fails on the
    # unique constraint, and is answered as the duplicate it is.
    text = ADT_A04.format(control="F3", mrn="M-32")
    assert codes(ingest(text, interface)) == ["AA"]
    from exchange.models import HL7Message as Stored

    real_filter = Stored.objects.filter
    calls = {"n": 0}

    def blind_first_check(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_filter(pk=-1)  # the first look finds nothing, as if the other copy were not committed
        return real_filter(*args, **kwargs)

    monkeypatch.setattr(Stored.objects, "filter", blind_first_check)
    outcome = ingest(text, interface)[0]
    assert outcome.ack_code == "AA"
    assert "Duplicate" in outcome.text
    assert calls["n"] >= 2
    assert Encounter.objects.count() == 1  # the loser's visit was rolled back
