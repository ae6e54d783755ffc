"""Page-number pagination that refuses what it cannot honour instead of guessing.

DRF's default quietly falls back to the default page size for ``page_size=abc``
or ``page_size=0`` and accepts ``page=last``; here those are a 400 naming the
parameter, and the schema states the ranges. A page past the last is a 404.
"""

from __future__ import annotations

from rest_framework.pagination import PageNumberPagination as _Base

from .errors import FieldErrors
from .filters import ID_MAX


def _int_param(request, name: str, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise FieldErrors([{"field": name, "message": "must be an integer"}]) from None
    if not low <= value <= high:
        raise FieldErrors([{"field": name, "message": f"must be in {low}..{high}"}])
    return value


class PageNumberPagination(_Base):
    page_size_query_param = "page_size"
    max_page_size = 500
    last_page_strings = ()

    def get_page_size(self, request):
        value = _int_param(request, self.page_size_query_param, 1, self.max_page_size)
        return self.page_size if value is None else value

    def paginate_queryset(self, queryset, request, view=None):
        _int_param(request, self.page_query_param, 1, ID_MAX)
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view):
        params = super().get_schema_operation_parameters(view)
        for param in params:
            if param["name"] == self.page_query_param:
                param["schema"].update({"minimum": 1, "maximum": ID_MAX})
            elif param["name"] == self.page_size_query_param:
                param["schema"].update({"minimum": 1, "maximum": self.max_page_size})
        return params
