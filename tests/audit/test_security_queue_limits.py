"""The security queue's limits: how many alerts one click may acknowledge, and which periods it accepts."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from audit.alert_workflow import BULK_MAX
from audit.models import AccessEvent, Alert, ChangeEvent
from tests.audit.alert_helpers import make_alert

pytestmark = pytest.mark.django_db


def test_acknowledging_more_than_the_cap_at_once_acknowledges_nothing(
    security: User, client_for: Callable[[User], Client]
) -> None:
    alert = make_alert()
    too_many = [alert.pk, *range(10_000, 10_000 + BULK_MAX)]
    response = client_for(security).post(reverse("security:alerts_acknowledge"), {"alert": too_many})
    assert response.status_code == 302
    assert Alert.objects.get(pk=alert.pk).status == Alert.Status.OPEN
    assert not ChangeEvent.objects.filter(category="alert").exists()


def test_the_same_alert_ticked_twice_is_acknowledged_once(security: User, client_for: Callable[[User], Client]) -> None:
    alert = make_alert()
    response = client_for(security).post(reverse("security:alerts_acknowledge"), {"alert": [alert.pk, alert.pk]})
    assert response.status_code == 302
    assert Alert.objects.get(pk=alert.pk).status == Alert.Status.ACKNOWLEDGED
    assert ChangeEvent.objects.filter(category="alert", object_id=alert.pk).count() == 1


def test_queue_refuses_a_period_that_ends_before_it_starts_and_records_nothing(
    security: User, client_for: Callable[[User], Client]
) -> None:
    before = AccessEvent.objects.filter(category="security_alert").count()
    response = client_for(security).get(
        reverse("security:alerts"), {"date_from": "2026-03-02", "date_to": "2026-03-01"}
    )
    assert response.status_code == 400
    assert "The start date is after the end date." in response.content.decode()
    assert AccessEvent.objects.filter(category="security_alert").count() == before


def test_queue_up_to_a_date_leaves_out_later_alerts(security: User, client_for: Callable[[User], Client]) -> None:
    now = timezone.now()
    earlier = make_alert(occurred_at=now - datetime.timedelta(days=10))
    make_alert(occurred_at=now)
    until = (now - datetime.timedelta(days=5)).date().isoformat()
    response = client_for(security).get(reverse("security:alerts"), {"date_to": until})
    assert response.status_code == 200
    assert [a.pk for a in response.context["alerts"]] == [earlier.pk]
