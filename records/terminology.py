"""The coded lists shipped with the application: common drugs, allergen classes, tests and vital signs.

Sources (transcribed by hand for this small list; check them against the current releases before
relying on them clinically, and prefer a terminology service once one is deployed):

- Drugs: RxNorm ingredient concepts (RxCUI), U.S. National Library of Medicine,
  https://www.nlm.nih.gov/research/umls/rxnorm/ (looked up through RxNav, https://mor.nlm.nih.gov/RxNav/).
- Allergen classes: the drug classes used for allergy checking in common practice (penicillins,
  cephalosporins, sulfonamide antibiotics, NSAIDs, opioids, ...). Their codes are our own
  (``class:<name>``); no public class code list is shipped here. Membership follows the drug's
  pharmacological class (e.g. the ATC groups J01C, J01D, J01E, M01A, N02A of the WHO ATC index).
- Laboratory tests and vital signs: LOINC codes (Regenstrief Institute, https://loinc.org), UCUM units.
  Reference intervals are typical adult intervals and critical limits typical hospital "critical
  value" call limits (e.g. MedlinePlus lab test pages, https://medlineplus.gov/lab-tests/); every
  laboratory validates its own, so these are defaults to be replaced by the local laboratory's.

Nothing here identifies a patient: these are public vocabularies. A patient's code for an entry is
stored encrypted with the entry (records/models.py), like its display text.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

CLASS_PREFIX = "class:"


@dataclass(frozen=True)
class DrugClass:
    code: str
    name: str
    # Words that name the class in free text ("penicillin allergy", "sulfa").
    aliases: tuple[str, ...]


@dataclass(frozen=True)
class Drug:
    rxcui: str
    name: str
    classes: tuple[str, ...]  # DrugClass codes
    aliases: tuple[str, ...] = ()


def _cls(name: str, *aliases: str) -> DrugClass:
    return DrugClass(CLASS_PREFIX + name, name.capitalize(), (name, *aliases))


DRUG_CLASSES: dict[str, DrugClass] = {
    c.code: c
    for c in (
        _cls("penicillins", "penicillin", "pcn"),
        _cls("cephalosporins", "cephalosporin"),
        _cls("sulfonamides", "sulfonamide", "sulfa", "sulpha"),
        _cls("nsaids", "nsaid", "non-steroidal anti-inflammatory"),
        _cls("opioids", "opioid", "opiate", "opiates"),
        _cls("macrolides", "macrolide"),
        _cls("fluoroquinolones", "fluoroquinolone", "quinolone", "quinolones"),
        _cls("tetracyclines", "tetracycline"),
        _cls("ace-inhibitors", "ace inhibitor", "ace inhibitors"),
        _cls("statins", "statin"),
    )
}

# Short names for the class codes, to keep the table below one drug per line.
PEN, CEPH, SULFA, NSAID, OPIOID = (
    "class:penicillins",
    "class:cephalosporins",
    "class:sulfonamides",
    "class:nsaids",
    "class:opioids",
)
MACRO, QUIN, TETRA, ACEI, STATIN = (
    "class:macrolides",
    "class:fluoroquinolones",
    "class:tetracyclines",
    "class:ace-inhibitors",
    "class:statins",
)

DRUGS: dict[str, Drug] = {
    d.rxcui: d
    for d in (
        # Penicillins (ATC J01C)
        Drug("723", "Amoxicillin", (PEN,)),
        Drug("19711", "Amoxicillin / Clavulanate", (PEN,), ("co-amoxiclav", "augmentin")),
        Drug("733", "Ampicillin", (PEN,)),
        Drug("7980", "Penicillin G", (PEN,), ("benzylpenicillin",)),
        Drug("7984", "Penicillin V", (PEN,), ("phenoxymethylpenicillin",)),
        Drug("8339", "Piperacillin", (PEN,)),
        # Cephalosporins (J01DB-DE)
        Drug("2231", "Cephalexin", (CEPH,), ("cefalexin",)),
        Drug("2180", "Cefazolin", (CEPH,)),
        Drug("2193", "Ceftriaxone", (CEPH,)),
        Drug("2194", "Cefuroxime", (CEPH,)),
        Drug("20481", "Cefepime", (CEPH,)),
        # Sulfonamide antibiotics (J01E) and other sulfonamide-containing drugs
        Drug("10180", "Sulfamethoxazole", (SULFA,)),
        Drug("10831", "Sulfamethoxazole / Trimethoprim", (SULFA,), ("co-trimoxazole", "bactrim")),
        Drug("9524", "Sulfasalazine", (SULFA,)),
        # Other antibiotics
        Drug("18631", "Azithromycin", (MACRO,)),
        Drug("21212", "Clarithromycin", (MACRO,)),
        Drug("4053", "Erythromycin", (MACRO,)),
        Drug("2551", "Ciprofloxacin", (QUIN,)),
        Drug("82122", "Levofloxacin", (QUIN,)),
        Drug("3640", "Doxycycline", (TETRA,)),
        Drug("11124", "Vancomycin", ()),
        Drug("2582", "Clindamycin", ()),
        Drug("6922", "Metronidazole", ()),
        Drug("7454", "Nitrofurantoin", ()),
        # NSAIDs (M01A) and aspirin
        Drug("5640", "Ibuprofen", (NSAID,)),
        Drug("7258", "Naproxen", (NSAID,)),
        Drug("3355", "Diclofenac", (NSAID,)),
        Drug("140587", "Celecoxib", (NSAID,)),
        Drug("35827", "Ketorolac", (NSAID,)),
        Drug("1191", "Aspirin", (NSAID,), ("acetylsalicylic acid",)),
        # Opioids (N02A)
        Drug("7052", "Morphine", (OPIOID,)),
        Drug("2670", "Codeine", (OPIOID,)),
        Drug("7804", "Oxycodone", (OPIOID,)),
        Drug("3423", "Hydromorphone", (OPIOID,)),
        Drug("4337", "Fentanyl", (OPIOID,)),
        Drug("10689", "Tramadol", (OPIOID,)),
        Drug("6813", "Methadone", (OPIOID,)),
        # Common others
        Drug("161", "Acetaminophen", (), ("paracetamol",)),
        Drug("29046", "Lisinopril", (ACEI,)),
        Drug("3827", "Enalapril", (ACEI,)),
        Drug("17767", "Amlodipine", ()),
        Drug("6918", "Metoprolol", ()),
        Drug("83367", "Atorvastatin", (STATIN,)),
        Drug("36567", "Simvastatin", (STATIN,)),
        Drug("6809", "Metformin", ()),
        Drug("11289", "Warfarin", ()),
        Drug("5224", "Heparin", ()),
        Drug("4603", "Furosemide", ()),
        Drug("7646", "Omeprazole", ()),
        Drug("26225", "Ondansetron", ()),
        Drug("8640", "Prednisone", ()),
        Drug("10582", "Levothyroxine", ()),
        Drug("6470", "Lorazepam", ()),
    )
}


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("/", " / ").split())


def _mentions(text: str, phrase: str) -> bool:
    """Whether ``phrase`` occurs in ``text`` as whole words (both normalised)."""
    return f" {_norm(phrase)} " in f" {text} "


def drug_by_code(code: str) -> Drug | None:
    return DRUGS.get(code.strip())


def drug_by_name(text: str) -> Drug | None:
    """The listed drug ``text`` names exactly (its name or an alias, case-insensitive), or None."""
    wanted = _norm(text)
    for drug in DRUGS.values():
        if wanted in {_norm(drug.name), *(_norm(a) for a in drug.aliases)}:
            return drug
    return None


def class_by_name(text: str) -> DrugClass | None:
    wanted = _norm(text)
    for drug_class in DRUG_CLASSES.values():
        if wanted in {_norm(drug_class.name), *(_norm(a) for a in drug_class.aliases)}:
            return drug_class
    return None


def drugs_mentioned(text: str) -> list[Drug]:
    """The listed drugs named anywhere in free text ("amoxicillin 500 mg caps" names amoxicillin)."""
    norm = _norm(text)
    return [d for d in DRUGS.values() if any(_mentions(norm, n) for n in (d.name, *d.aliases))]


def classes_mentioned(text: str) -> list[DrugClass]:
    norm = _norm(text)
    return [c for c in DRUG_CLASSES.values() if any(_mentions(norm, a) for a in (c.name, *c.aliases))]


def allergen_choices() -> list[tuple[str, str]]:
    """Coded choices of the allergy form: the classes first, then the single drugs."""
    classes = [(c.code, f"{c.name} (class)") for c in DRUG_CLASSES.values()]
    drugs = sorted(((d.rxcui, d.name) for d in DRUGS.values()), key=lambda choice: choice[1])
    return classes + drugs


def drug_choices() -> list[tuple[str, str]]:
    return sorted(((d.rxcui, d.name) for d in DRUGS.values()), key=lambda choice: choice[1])


# --- Tests and vital signs ------------------------------------------------------------------------


@dataclass(frozen=True)
class NumericTest:
    """A numeric test: its unit, the plausible limits (outside them the value is refused as an entry
    error), the reference interval (outside: abnormal, H/L) and the critical limits (HH/LL)."""

    loinc: str
    name: str
    unit: str
    plausible: tuple[Decimal, Decimal]
    reference: tuple[Decimal | None, Decimal | None]
    critical: tuple[Decimal | None, Decimal | None] = (None, None)

    @property
    def reference_text(self) -> str:
        low, high = self.reference
        if low is None:
            return f"< {high} {self.unit}"
        if high is None:
            return f"> {low} {self.unit}"
        return f"{low}-{high} {self.unit}"


def _d(value: str | None) -> Decimal | None:
    return None if value is None else Decimal(value)


def _test(
    loinc: str,
    name: str,
    unit: str,
    plausible: tuple[str, str],
    reference: tuple[str | None, str | None],
    critical: tuple[str | None, str | None] = (None, None),
) -> NumericTest:
    return NumericTest(
        loinc,
        name,
        unit,
        (Decimal(plausible[0]), Decimal(plausible[1])),
        (_d(reference[0]), _d(reference[1])),
        (_d(critical[0]), _d(critical[1])),
    )


LAB_TESTS: dict[str, NumericTest] = {
    t.loinc: t
    for t in (
        _test("2823-3", "Potassium", "mmol/L", ("0.5", "15"), ("3.5", "5.1"), ("2.8", "6.2")),
        _test("2951-2", "Sodium", "mmol/L", ("80", "200"), ("135", "145"), ("120", "160")),
        _test("2075-0", "Chloride", "mmol/L", ("50", "150"), ("98", "107")),
        _test("2345-7", "Glucose", "mg/dL", ("5", "2000"), ("70", "99"), ("40", "500")),
        _test("2160-0", "Creatinine", "mg/dL", ("0.05", "30"), ("0.6", "1.3")),
        _test("3094-0", "Urea nitrogen (BUN)", "mg/dL", ("1", "300"), ("7", "20")),
        _test("17861-6", "Calcium", "mg/dL", ("2", "20"), ("8.6", "10.3"), ("6.5", "13")),
        _test("2601-3", "Magnesium", "mg/dL", ("0.2", "10"), ("1.7", "2.2"), ("1.0", "4.7")),
        _test("718-7", "Hemoglobin", "g/dL", ("1", "25"), ("12.0", "17.5"), ("7.0", "20.0")),
        _test("6690-2", "Leukocytes (WBC)", "10*3/uL", ("0", "500"), ("4.0", "11.0"), ("2.0", "30.0")),
        _test("777-3", "Platelets", "10*3/uL", ("0", "3000"), ("150", "400"), ("20", "1000")),
        _test("34714-6", "INR", "{INR}", ("0.5", "20"), ("0.8", "1.2"), (None, "5.0")),
        _test("1742-6", "ALT", "U/L", ("0", "20000"), ("7", "56")),
        _test("1975-2", "Bilirubin, total", "mg/dL", ("0", "50"), ("0.1", "1.2"), (None, "15")),
        _test("2524-7", "Lactate", "mmol/L", ("0", "30"), ("0.5", "2.2"), (None, "4.0")),
        _test("4548-4", "Hemoglobin A1c", "%", ("2", "25"), ("4.0", "5.6")),
        _test("2093-3", "Cholesterol, total", "mg/dL", ("20", "1000"), (None, "199")),
    )
}

# Vital signs: the plausible limits are what the form accepts at all; outside the reference interval
# the value is flagged abnormal in the chart (adult resting values).
VITAL_SIGNS: dict[str, NumericTest] = {
    t.loinc: t
    for t in (
        _test("8867-4", "Heart rate", "/min", ("20", "250"), ("60", "100"), ("40", "150")),
        _test("8480-6", "Systolic blood pressure", "mm[Hg]", ("50", "260"), ("90", "139"), ("70", "200")),
        _test("8462-4", "Diastolic blood pressure", "mm[Hg]", ("20", "160"), ("60", "89"), (None, "120")),
        _test("8310-5", "Body temperature", "Cel", ("30", "44"), ("36.0", "37.9"), ("35.0", "40.0")),
        _test("59408-5", "Oxygen saturation", "%", ("50", "100"), ("94", "100"), ("88", None)),
    )
}


def numeric_test(loinc_code: str) -> NumericTest | None:
    code = loinc_code.strip()
    return LAB_TESTS.get(code) or VITAL_SIGNS.get(code)


def lab_test_by_name(text: str) -> NumericTest | None:
    wanted = _norm(text)
    return next((t for t in LAB_TESTS.values() if _norm(t.name) == wanted), None)


class Flag:
    """Interpretation codes (HL7 v2 table 0078 / FHIR ObservationInterpretation)."""

    NORMAL = "N"
    LOW = "L"
    HIGH = "H"
    CRITICAL_LOW = "LL"
    CRITICAL_HIGH = "HH"
    CRITICAL = (CRITICAL_LOW, CRITICAL_HIGH)
    LABELS = {
        NORMAL: "normal",
        LOW: "low",
        HIGH: "high",
        CRITICAL_LOW: "critical low",
        CRITICAL_HIGH: "critical high",
    }


def interpret(test: NumericTest, value: Decimal) -> str:
    """The flag of ``value`` against the test's critical limits first, then its reference interval."""
    crit_low, crit_high = test.critical
    low, high = test.reference
    if crit_low is not None and value < crit_low:
        return Flag.CRITICAL_LOW
    if crit_high is not None and value > crit_high:
        return Flag.CRITICAL_HIGH
    if low is not None and value < low:
        return Flag.LOW
    if high is not None and value > high:
        return Flag.HIGH
    return Flag.NORMAL


def lab_test_choices() -> list[tuple[str, str]]:
    return [(t.loinc, f"{t.name} ({t.unit})") for t in LAB_TESTS.values()]
