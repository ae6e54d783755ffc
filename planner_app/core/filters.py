"""Query filters shared by the list endpoints.

Every integer filter states its range in the schema and enforces it: an id past
the database's 64-bit range is a 400 naming the parameter, never a database overflow.
A filter on an id that does not exist (or is someone else's) matches nothing.
"""

from __future__ import annotations

from django import forms
from django_filters import rest_framework as df
from drf_spectacular.utils import extend_schema_field

ID_MAX = 2**63 - 1


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": ID_MAX})
class IdFilter(df.NumberFilter):
    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", ID_MAX)
        super().__init__(*args, **kwargs)
