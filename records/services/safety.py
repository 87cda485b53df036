"""Patient-safety checks of the write path: drug-allergy conflicts, duplicate allergies, result values.

They run inside the service's transaction, after the capability and relationship checks, and before
anything is saved. Exceptions raised here carry no patient value in their text (they may reach a
log): the details a user needs are attributes, rendered by the form that caught them.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError

from records import terminology
from records.models import Allergy

# What a prescriber must do to go ahead; the same words on the form and in the exception.
OVERRIDE_HINT = (
    "This medication conflicts with a recorded allergy. Change the prescription, or tick "
    "“Prescribe despite the allergy” and give the reason."
)


@dataclass(frozen=True)
class AllergyConflict:
    """One recorded allergy the prescription conflicts with, and why (same substance, or a class)."""

    allergy_id: int
    why: str


class AllergyWarning(ValidationError):
    """The prescription conflicts with recorded allergies; saved only with an override and a reason."""

    def __init__(self, conflicts: tuple[AllergyConflict, ...]) -> None:
        super().__init__(OVERRIDE_HINT, code="allergy_conflict")
        self.conflicts = conflicts


@dataclass(frozen=True)
class Coded:
    """An entry's code and display after resolving what was entered against the shipped lists."""

    code: str
    display: str


def resolve_drug(*, code: str, display: str) -> Coded:
    """The medication's code and display: a listed RxCUI, or a free-text name that is exactly a listed drug.

    A code not in the shipped list (an import may carry any RxNorm code) is kept as given.
    """
    code, display = code.strip(), display.strip()
    drug = terminology.drug_by_code(code) if code else terminology.drug_by_name(display)
    if drug is not None:
        return Coded(drug.rxcui, display or drug.name)
    if not display:
        raise ValidationError({"display": "Choose a medication from the list or type its name."})
    return Coded(code, display)


def resolve_allergen(*, code: str, substance: str) -> Coded:
    """The allergy's code: a listed class or drug chosen, or free text that is exactly one of their names."""
    code, substance = code.strip(), substance.strip()
    if code:
        if code in terminology.DRUG_CLASSES:
            return Coded(code, substance or terminology.DRUG_CLASSES[code].name)
        drug = terminology.drug_by_code(code)
        if drug is not None:
            return Coded(code, substance or drug.name)
        raise ValidationError({"code": "Choose an allergen from the list, or type the substance instead."})
    if not substance:
        raise ValidationError({"substance": "Choose an allergen from the list or type the substance."})
    drug_class = terminology.class_by_name(substance)
    if drug_class is not None:
        return Coded(drug_class.code, substance)
    drug = terminology.drug_by_name(substance)
    return Coded(drug.rxcui if drug else "", substance)


def _drug_facts(coded: Coded) -> tuple[set[str], set[str]]:
    """The substances (RxCUIs) and classes a medication entry stands for; free text is matched by name."""
    drugs = [d] if (d := terminology.drug_by_code(coded.code)) else terminology.drugs_mentioned(coded.display)
    substances = {d.rxcui for d in drugs}
    classes = {c for d in drugs for c in d.classes}
    classes |= {c.code for c in terminology.classes_mentioned(coded.display)}
    return substances, classes


def _allergen_facts(code: str, substance: str) -> tuple[set[str], set[str]]:
    """The substances and classes an allergy covers. An allergy to one drug covers its classes too:
    cross-reactivity within a class (penicillins, NSAIDs...) is the usual clinical caution."""
    if code in terminology.DRUG_CLASSES:
        return set(), {code}
    drugs = [d] if (d := terminology.drug_by_code(code)) else terminology.drugs_mentioned(substance)
    classes = {c for d in drugs for c in d.classes}
    classes |= {c.code for c in terminology.classes_mentioned(substance)}
    return {d.rxcui for d in drugs}, classes


def allergy_conflicts(*, patient_id: int, medication: Coded) -> tuple[AllergyConflict, ...]:
    """The patient's recorded allergies that ``medication`` conflicts with (same substance or class).

    Decrypts the patient's allergies inside the write that asked; nothing is returned but ids and
    the reason, which the form shows next to the allergy list it reads through the selectors.
    """
    substances, classes = _drug_facts(medication)
    display = terminology._norm(medication.display)
    conflicts = []
    for allergy in Allergy.objects.filter(patient_id=patient_id).only("id", "row_uid", "code", "substance"):
        allergy_substances, allergy_classes = _allergen_facts(allergy.code or "", allergy.substance)
        if substances & allergy_substances or (display and display == terminology._norm(allergy.substance)):
            conflicts.append(AllergyConflict(allergy.pk, "same substance"))
        elif shared := classes & allergy_classes:
            names = ", ".join(sorted(terminology.DRUG_CLASSES[c].name.lower() for c in shared))
            conflicts.append(AllergyConflict(allergy.pk, f"same class ({names})"))
    return tuple(conflicts)


def check_allergy_not_duplicate(*, patient_id: int, allergen: Coded) -> None:
    """Refuse a second allergy entry for the same substance (same code, or same text) for this patient."""
    text = terminology._norm(allergen.display)
    for allergy in Allergy.objects.filter(patient_id=patient_id).only("id", "row_uid", "code", "substance"):
        same_code = bool(allergen.code) and allergen.code == (allergy.code or "")
        if same_code or text == terminology._norm(allergy.substance):
            raise ValidationError(
                "This allergy is already recorded for this patient; it was not added a second time.",
                code="duplicate_allergy",
            )


@dataclass(frozen=True)
class Interpreted:
    value: str
    unit: str
    interpretation: str
    reference_range: str


def interpret_result(*, loinc_code: str, value: str, unit: str) -> Interpreted:
    """Validate a value for a known numeric test (number, plausible, unit) and flag it; others pass as entered."""
    test = terminology.numeric_test(loinc_code)
    if test is None:
        return Interpreted(value, unit, "", "")
    try:
        number = Decimal(value.strip().replace(",", "."))
    except InvalidOperation:
        number = None
    if number is None or not number.is_finite():
        raise ValidationError({"value": f"{test.name} is a number: enter a value in {test.unit}."})
    low, high = test.plausible
    if not low <= number <= high:
        raise ValidationError(
            {"value": f"{test.name} must be between {low} and {high} {test.unit}; check the value entered."}
        )
    if unit.strip() and unit.strip() != test.unit:
        raise ValidationError({"unit": f"{test.name} is entered in {test.unit}."})
    # Fixed-point text: "1e2" is stored as "100", never in exponent form.
    return Interpreted(format(number, "f"), test.unit, terminology.interpret(test, number), test.reference_text)
