"""Serializer fields shared by the domains."""

from __future__ import annotations

import math

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class FiniteFloatField(serializers.FloatField):
    default_error_messages = {"non_finite": "must be a finite number"}

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if not math.isfinite(value):
            self.fail("non_finite")
        return value


@extend_schema_field(OpenApiTypes.INT)
class OwnedPrimaryKeyField(serializers.PrimaryKeyRelatedField):
    """A reference to one of the requesting user's objects; others' ids read as not found."""

    def __init__(self, model, **kwargs):
        self.owned_model = model
        super().__init__(**kwargs)

    def get_queryset(self):
        return self.owned_model.objects.filter(owner=self.context["request"].user)


def iso(value) -> str | None:
    """A datetime as DRF renders it (ISO 8601, UTC as 'Z')."""
    return None if value is None else _DATETIME.to_representation(value)


_DATETIME = serializers.DateTimeField()
