"""Views of the example shop: each logs, and its records carry the request's fields."""

import logging

from django.http import HttpRequest, JsonResponse

log = logging.getLogger("shop.views")


def products(request: HttpRequest) -> JsonResponse:
    """List the products; two records for this request."""
    log.info("listing products")
    items = ["tea", "cake"]
    log.info("found %d products", len(items), extra={"count": len(items)})
    return JsonResponse({"products": items})


def cart(request: HttpRequest) -> JsonResponse:
    """The logged-in user's cart: its record carries user_id."""
    if not request.user.is_authenticated:
        log.warning("cart requested without login")
        return JsonResponse({"error": "login required"}, status=401)
    log.info("showing cart", extra={"items": 3})
    return JsonResponse({"items": 3})


def boom(request: HttpRequest) -> JsonResponse:
    """Fails: Django logs the 500 on django.request, with the request's fields."""
    raise RuntimeError("the oven is on fire")
