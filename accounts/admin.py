from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from accounts.models import Department, User
from accounts.services import auth_event_emit, otp_reset, user_role_change
from accounts.signals import AuthEvent


def _operator(request: HttpRequest) -> User:
    """The signed-in person working in the admin (the admin site lets no one else in)."""
    if not isinstance(request.user, User):
        raise PermissionDenied
    return request.user


@admin.register(Department)
class DepartmentAdmin(admin.ModelAdmin[Department]):
    list_display = ("name", "code", "kind")
    list_filter = ("kind",)
    search_fields = ("name", "code")


@admin.register(User)
class UserAdmin(DjangoUserAdmin[User]):
    list_display = ("username", "role", "department", "is_active", "last_login")
    list_filter = ("role", "department", "is_active", "is_staff")
    fieldsets = (
        *(DjangoUserAdmin.fieldsets or ()),
        ("Role", {"fields": ("role", "department")}),
    )
    # A new account is created with its role (the database refuses a non-operator without one).
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "usable_password", "password1", "password2")}),
        ("Role", {"fields": ("role", "department")}),
    )
    actions = ["reset_second_factor"]

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            auth_event_emit(
                AuthEvent.ACCOUNT_CREATED,
                request=request,
                actor=_operator(request),
                target=obj,
                role=obj.role or "operator",
            )
            return
        if "is_active" in form.changed_data:
            event = AuthEvent.ACCOUNT_REACTIVATED if obj.is_active else AuthEvent.ACCOUNT_DEACTIVATED
            auth_event_emit(event, request=request, actor=_operator(request), target=obj)
        # A role or department change goes through the service, so it is recorded with its actor.
        if change and {"role", "department"} & set(form.changed_data):
            new_role, new_department = obj.role, obj.department
            original = User.objects.get(pk=obj.pk)
            obj.role, obj.department = original.role, original.department
            super().save_model(request, obj, form, change)
            user_role_change(
                actor=_operator(request), user=obj, role=new_role, department=new_department, request=request
            )
            obj.refresh_from_db()
            return
        super().save_model(request, obj, form, change)

    @admin.action(description="Reset second factor (the person enrols a new authenticator at next sign-in)")
    def reset_second_factor(self, request: HttpRequest, queryset: Any) -> None:
        for user in queryset:
            otp_reset(actor=_operator(request), user=user, request=request)
        self.message_user(request, f"Second factor reset for {queryset.count()} account(s).")
