"""The HL7 message log in the admin: compliance reads what each message was and how it was answered,
never the message itself; nobody adds or changes a row there."""

from __future__ import annotations

from collections.abc import Callable

from django.test import Client

from accounts.models import User
from exchange.hl7.ingest import ingest_bytes
from exchange.models import HL7Message
from tests.exchange.hl7.test_ingest import ADT_A04, ORU_R01

LIST = "/admin/exchange/hl7message/"


def test_compliance_reads_the_log_with_the_reasons_but_never_a_message(
    client_for: Callable[[User], Client], compliance: User, interface: User
) -> None:
    ingest_bytes(ADT_A04.format(control="LOG-1", mrn="M-801").encode(), actor=interface, channel="mllp")
    ingest_bytes(
        ORU_R01.format(control="LOG-2", mrn="M-999", potassium="4.1").encode(), actor=interface, channel="file"
    )
    accepted, refused = HL7Message.objects.get(control_id="LOG-1"), HL7Message.objects.get(control_id="LOG-2")
    assert (accepted.ack_code, refused.ack_code) == ("AA", "AE")
    client = client_for(compliance)

    listing = client.get(LIST)
    detail = client.get(f"{LIST}{refused.pk}/change/")
    found = client.get(LIST, {"q": "LOG-2"})
    errors_only = client.get(LIST, {"ack_code": "AE"})

    assert listing.status_code == detail.status_code == found.status_code == errors_only.status_code == 200
    page = listing.content.decode()
    assert "LOG-1" in page
    assert "LOG-2" in page
    assert refused.error
    assert refused.error in detail.content.decode(), refused.error
    assert "LOG-1" not in found.content.decode()
    assert "LOG-1" not in errors_only.content.decode()
    for response in (listing, detail):
        text = response.content.decode()
        # The message's values (name, MRN, birth date, result) and its stored forms never reach the page.
        for value in ("Quixote", "M-801", "M-999", "19700302", "4.1", refused.digest, "hc2:"):
            assert value not in text


def test_nobody_adds_changes_or_deletes_a_message_and_other_roles_do_not_see_the_log(
    client_for: Callable[[User], Client], compliance: User, physician: User, interface: User
) -> None:
    ingest_bytes(ADT_A04.format(control="LOG-3", mrn="M-802").encode(), actor=interface, channel="mllp")
    row = HL7Message.objects.get()
    client = client_for(compliance)
    assert client.get(f"{LIST}add/").status_code == 403
    assert client.post(f"{LIST}{row.pk}/change/", {"error": "edited"}).status_code == 403
    assert client.post(f"{LIST}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert HL7Message.objects.get().error == row.error
    assert client_for(physician).get(LIST).status_code in (302, 403)
