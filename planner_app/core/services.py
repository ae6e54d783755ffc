"""Write paths shared by every domain: users and their API tokens."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token


def user_ensure(username: str, password: str | None = None, *, superuser: bool = False) -> tuple[Any, str]:
    """Create the user if needed (setting the password when given); return it and its API token."""
    User = get_user_model()
    user, created = User.objects.get_or_create(username=username)
    if password is not None:
        user.set_password(password)
    elif created:
        user.set_unusable_password()
    if superuser:
        user.is_staff = user.is_superuser = True
    user.save()
    token, _ = Token.objects.get_or_create(user=user)
    return user, token.key
