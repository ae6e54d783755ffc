"""Serializer fields shared by the domains."""

from __future__ import annotations

import math

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers


class StrictBooleanField(serializers.BooleanField):
    """true or false, nothing else: DRF's BooleanField also takes 0, 1, "yes", "off", ..., which
    the schema (type: boolean) does not allow and a typo should not turn into a setting."""

    def to_internal_value(self, data):
        if data is True or data is False:
            return data
        self.fail("invalid", input=data)


def _json_typed(field_class, accepts, expected: str) -> None:
    """Make ``field_class`` refuse JSON values of another type before its own parsing."""
    parse = field_class.to_internal_value
    if getattr(parse, "_json_typed", False):
        return

    def to_internal_value(self, data):
        if not accepts(data):
            raise serializers.ValidationError(f"must be {expected}, not {_json_kind(data)}", code="invalid")
        return parse(self, data)

    to_internal_value._json_typed = True
    field_class.to_internal_value = to_internal_value


def _json_kind(data) -> str:
    return {bool: "a boolean", str: "a string", int: "an integer", float: "a number", dict: "an object",
            list: "an array", type(None): "null"}.get(type(data), type(data).__name__)


def install_strict_types() -> None:
    """The API takes JSON and its schema states each field's JSON type; DRF would coerce "1" and
    true into numbers and 0 into a string, so a request that violates the schema (or has a typo)
    would be read as something else. Called once from the app's ready()."""
    from django.db import models
    serializers.ModelSerializer.serializer_field_mapping[models.BooleanField] = StrictBooleanField
    number = lambda d: isinstance(d, (int, float)) and not isinstance(d, bool)  # noqa: E731
    _json_typed(serializers.FloatField, number, "a number")
    _json_typed(serializers.IntegerField, number, "an integer")
    _json_typed(serializers.DecimalField, number, "a number")
    _json_typed(serializers.CharField, lambda d: isinstance(d, str), "a string")


@extend_schema_field({"type": "string", "maxLength": 500, "pattern": "^https?://.+$",
                      "description": "an http(s) URL; empty: none"})
class OptionalURLField(serializers.CharField):
    """A URL or "" (none): the schema says so (format uri does not allow "", and fuzzers read an
    anyOf of uri and "" as uri)."""

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        if value:     # checked here, not as a validator, which would put format uri back in the schema
            from django.core.exceptions import ValidationError
            from django.core.validators import URLValidator
            try:
                URLValidator(schemes=["http", "https"])(value)
            except ValidationError:
                raise serializers.ValidationError("must be an http(s) URL", code="invalid") from None
        return value


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
