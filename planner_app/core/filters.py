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


class StrictFilterBackend(df.DjangoFilterBackend):
    """django-filter, minus its leniency: a filter given twice, given empty, or a boolean spelt
    other than true/false is a 400 naming the parameter (django-filter would ignore the
    filter or read ``null`` as "no filter" and answer the whole list)."""

    SINGLE = ("page", "page_size", "ordering")

    def filter_queryset(self, request, queryset, view):
        filterset_class = self.get_filterset_class(view, queryset)
        filters = filterset_class.base_filters if filterset_class else {}
        problems = []
        if "" in request.query_params:      # "?=x" or "?&": a parameter without a name
            problems.append({"field": "", "message": "a query parameter has no name"})
        for name in [*filters, *self.SINGLE]:
            values = request.query_params.getlist(name)
            if len(values) > 1:
                problems.append({"field": name, "message": "given more than once; give it once"})
            elif values and name in filters and values[0] == "":
                # not "must not be empty": the parameter is optional, and machine readers of this
                # envelope (Schemathesis's error feedback) take that wording to mean "required"
                problems.append({"field": name, "message": "given without a value: give one, or leave the "
                                                           "parameter out to not filter"})
            elif values and isinstance(filters.get(name), df.BooleanFilter) and values[0] not in ("true", "false"):
                problems.append({"field": name, "message": "must be true or false"})
        if problems:
            from .errors import FieldErrors
            raise FieldErrors(problems)
        return super().filter_queryset(request, queryset, view)


class UtcDateTimeFilter(df.IsoDateTimeFilter):
    """An ISO 8601 date-time, compared in UTC: PostgreSQL refuses offsets past +-15:59 that
    Python (and the date-time format) allow, and a date near year 1 may not convert (a 400)."""

    def filter(self, qs, value):
        if value is not None:
            import datetime as dt
            try:
                value = value.astimezone(dt.timezone.utc)
            except (OverflowError, ValueError):
                from .errors import FieldErrors
                raise FieldErrors([{"field": self.field_name, "message": "date-time out of range"}]) from None
        return super().filter(qs, value)
