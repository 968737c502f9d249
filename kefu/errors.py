"""The one way an error becomes an HTTP answer, for every service.

An error a caller can act on derives from ``ServiceError`` and declares, on its class, the HTTP ``status`` and the
machine-readable ``code`` it is answered with; ``kefu.ops`` renders every one as ``{"error": code, "detail": ...}``.
The mapping lives beside each error, not in a table kept by each app: an error added to a service is answered as
it declares, and cannot be forgotten by a table (it used to become a 500, or a vague 400).

This module imports nothing of the web stack, so a service's domain may raise these errors without knowing HTTP
beyond the two class attributes.
"""

from collections.abc import Mapping
from types import MappingProxyType


class ServiceError(Exception):
    """An error the caller can act on; subclasses set ``status`` and ``code``, and ``detail`` says what went wrong.

    ``headers`` are added to the answer (``WWW-Authenticate`` on a 401, ``Retry-After`` on a 429); a 503 always
    carries ``Retry-After`` (``kefu.ops.error_response``).
    """

    status: int = 400
    code: str = "bad_request"
    headers: Mapping[str, str] = MappingProxyType({})

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
