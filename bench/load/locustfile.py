"""The simulated staff of the load test (run by bench/load/run.py, not by hand).

Each simulated user signs in for real with one load account (password, then a TOTP code computed
from the account's secret), answers a step-up prompt if a page asks for one, then works without
pause (or, in the paced rounds, with a pause between pages: LOAD_THINK): physicians and nurses mostly open charts of their own patients, everyone searches by
surname or MRN (posted), nurses record vitals, the laboratory enters results, all look at their
dashboard. CSRF tokens are read from the forms, as a browser does.

Configured by the driver through the environment: LOAD_PLAN (the accounts and search terms),
LOAD_COUNTS (users per role), LOAD_TAG (request id prefix), LOAD_OUT (where each request's kind,
start, duration and outcome go), LOAD_STEPS (the last TOTP step each account used, kept between rounds).
"""

from __future__ import annotations

import json
import os
import random
import re
import time
import uuid
from http.cookiejar import DefaultCookiePolicy
from pathlib import Path
from typing import Any

from django_otp.oath import totp
from locust import between, constant, events
from locust.contrib.fasthttp import FastHttpUser

PLAN: dict[str, Any] = json.loads(Path(os.environ["LOAD_PLAN"]).read_text()) if "LOAD_PLAN" in os.environ else {}
COUNTS = {k: int(v) for k, _, v in (p.partition(":") for p in os.environ.get("LOAD_COUNTS", "").split(",") if p)}
TAG = os.environ.get("LOAD_TAG", "load")
# LOAD_THINK "low,high": each user pauses between low and high seconds between pages (the paced rounds);
# unset, users work without pause (the saturation rounds).
THINK = tuple(float(x) for x in os.environ["LOAD_THINK"].split(",")) if os.environ.get("LOAD_THINK") else ()
STEPS = Path(os.environ.get("LOAD_STEPS", "/tmp/load-steps"))  # noqa: S108 - the driver always sets it
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
RECORDS: list[tuple[str, float, float, bool]] = []  # (kind, start, seconds, ok) of every request
SIGNED_IN: list[float] = []  # when each user finished signing in
FAILURES: dict[str, int] = {}  # "kind: reason" -> count, for the driver's report
CHART_OK = [0]  # chart pages answered 200 (the driver compares them with the access events)
_taken: dict[str, int] = {}
# The application runs as behind a TLS proxy (BEHIND_TLS_PROXY): the proxy says the request came over
# HTTPS, and a browser on an HTTPS page sends its Referer, which Django's CSRF check asks for.
HEADERS = {"X-Forwarded-Proto": "https", "Referer": os.environ.get("LOAD_REFERER", "https://127.0.0.1/")}


class BehindTLSProxy(DefaultCookiePolicy):
    """Send the Secure session and CSRF cookies over the loopback, as the TLS proxy would."""

    def return_ok_secure(self, cookie: Any, request: Any) -> bool:
        return True


@events.request.add_listener
def _record(
    request_type: str, name: str, response_time: float, exception: Any, start_time: float = 0.0, **kw: Any
) -> None:
    RECORDS.append((name, start_time or time.time() - response_time / 1000, response_time / 1000, exception is None))
    if exception is not None:
        reason = f"{name}: {str(exception)[:80]}"
        FAILURES[reason] = FAILURES.get(reason, 0) + 1


@events.quitting.add_listener
def _dump(environment: Any, **kw: Any) -> None:
    out = os.environ.get("LOAD_OUT")
    if out:
        Path(out).write_text(
            json.dumps({"records": RECORDS, "signed_in": SIGNED_IN, "chart_ok": CHART_OK[0], "failures": FAILURES})
        )


def _account(role: str) -> dict[str, Any]:
    mine = [a for a in PLAN["accounts"] if a["role"] == role]
    index = _taken.get(role, 0)
    _taken[role] = index + 1
    return mine[index % len(mine)]


class Staff(FastHttpUser):
    abstract = True
    role = ""
    wait_time = between(*THINK) if THINK else constant(0)
    default_headers = HEADERS
    network_timeout = 60.0
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.client.cookiejar.set_policy(BehindTLSProxy())
        self.account = _account(self.role)
        self.patients: list[int] = self.account["patients"]
        self.csrf = ""
        self.sign_in()
        SIGNED_IN.append(time.time())

    # --- sign-in ---------------------------------------------------------------------------------

    def _token(self, html: str) -> None:
        found = CSRF.search(html)
        if found:
            self.csrf = found.group(1)

    def _code(self) -> str:
        """The current TOTP code, waiting for the next 30 s step if this account used this one already
        (a used code is refused, and a refusal would count toward the lockout)."""
        path = STEPS / self.account["username"]
        last = int(path.read_text()) if path.exists() else -1
        while (step := int(time.time()) // 30) <= last:
            time.sleep(0.2)
        path.write_text(str(step))
        return f"{totp(bytes.fromhex(self.account['totp_key']), t0=0, step=30, digits=6, drift=0):06d}"

    def sign_in(self) -> None:
        page = self.client.get("/accounts/login/", name="sign-in")
        self._token(page.text or "")
        self.client.post(
            "/accounts/login/",
            data={
                "username": self.account["username"],
                "password": self.account["password"],
                "csrfmiddlewaretoken": self.csrf,
            },
            name="sign-in",
        )
        with self.client.post(
            "/accounts/login/code/",
            data={"otp_token": self._code(), "csrfmiddlewaretoken": self.csrf},
            name="sign-in",
            allow_redirects=False,
            catch_response=True,
        ) as response:
            if response.status_code != 302:
                response.failure(f"sign-in refused ({response.status_code})")
                raise RuntimeError("sign-in refused")
        self._token(self.client.get("/", name="sign-in").text or "")

    def step_up(self, next_path: str) -> None:
        page = self.client.get(f"/accounts/verify/?next={next_path}", name="step-up")
        self._token(page.text or "")
        self.client.post(
            "/accounts/verify/",
            data={"otp_token": self._code(), "next": next_path, "csrfmiddlewaretoken": self.csrf},
            name="step-up",
            allow_redirects=False,
        )

    # --- the pages -------------------------------------------------------------------------------

    def chart(self) -> None:
        if not self.patients:
            return self.dashboard()
        path = f"/patients/{random.choice(self.patients)}/"
        headers = {"X-Request-ID": f"{TAG}-chart-{uuid.uuid4().hex}"}
        with self.client.get(path, name="chart", headers=headers, allow_redirects=False, catch_response=True) as r:
            if r.status_code == 302 and "/accounts/verify/" in (r.headers.get("Location") or ""):
                r.success()
                self.step_up(path)
                return None
            if r.status_code == 200:
                CHART_OK[0] += 1
            else:
                r.failure(f"status {r.status_code}")
        return None

    def search(self) -> None:
        if random.random() < 0.6:
            data = {"family_name": random.choice(PLAN["surnames"])}
        else:
            data = {"mrn": random.choice(PLAN["mrns"])}
        with self.client.post(
            "/patients/search/", data={**data, "csrfmiddlewaretoken": self.csrf}, name="search", catch_response=True
        ) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")

    def dashboard(self) -> None:
        with self.client.get("/", name="dashboard", catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"status {r.status_code}")
            else:
                self._token(r.text or "")

    def _post(self, path: str, data: dict[str, str], kind: str) -> None:
        with self.client.post(
            path, data={**data, "csrfmiddlewaretoken": self.csrf}, name=kind, allow_redirects=False, catch_response=True
        ) as r:
            if r.status_code != 302:
                r.failure(f"status {r.status_code}")

    def vitals(self) -> None:
        if not self.patients:
            return
        self._post(
            f"/patients/{random.choice(self.patients)}/vitals/",
            {"heart_rate": str(random.randint(55, 110)), "systolic": str(random.randint(105, 150)), "diastolic": "70"},
            "vitals entry",
        )

    def result(self) -> None:
        if not PLAN["lab_orders"]:
            return
        self._post(
            f"/orders/{random.choice(PLAN['lab_orders'])}/results/",
            {"loinc_code": "2345-7", "value": str(random.randint(70, 140)), "unit": "mg/dL", "display": ""},
            "result entry",
        )


class Physician(Staff):
    role = "physician"
    fixed_count = COUNTS.get("physician", 0)
    tasks = {Staff.chart: 10, Staff.search: 3, Staff.dashboard: 2}


class Nurse(Staff):
    role = "nurse"
    fixed_count = COUNTS.get("nurse", 0)
    tasks = {Staff.chart: 8, Staff.vitals: 3, Staff.search: 1, Staff.dashboard: 2}


class FrontDesk(Staff):
    role = "front_desk"
    fixed_count = COUNTS.get("front_desk", 0)
    tasks = {Staff.search: 6, Staff.dashboard: 2}


class Lab(Staff):
    role = "lab"
    fixed_count = COUNTS.get("lab", 0)
    tasks = {Staff.result: 4, Staff.dashboard: 2}
