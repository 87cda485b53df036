"""The shape every data-entry view shares: validate, call the service, show errors as a 400."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render


def _form_error_response(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    """Re-show a form with its errors; bad input is a 400, never a 500, and nothing is saved."""
    return render(request, template, context, status=400)


def _apply_validation_error(form: Any, error: ValidationError) -> None:
    if hasattr(error, "error_dict"):
        for field_name, errors in error.error_dict.items():
            target = field_name if field_name in form.fields else None
            for item in errors:
                form.add_error(target, item)
    else:
        for message in error.messages:
            form.add_error(None, message)


def _write(
    request: HttpRequest,
    *,
    form: Any,
    action: Callable[[dict[str, Any]], Any],
    success: str,
    template: str,
    context: dict[str, Any],
    success_message: str,
    error_context: Callable[[], dict[str, Any]] | None = None,
) -> HttpResponse:
    """The POST half of every data-entry view.

    ``error_context`` adds to the context of a rejected form only (e.g. the patient banner, which is
    a read of the record and so is fetched, and audited, only when the form is shown again).
    """
    if form.is_valid():
        try:
            action(form.cleaned_data)
        except ValidationError as error:
            _apply_validation_error(form, error)
        else:
            messages.success(request, success_message)
            return redirect(success)
    extra = error_context() if error_context is not None else {}
    return _form_error_response(request, template, {**context, **extra, "form": form})
