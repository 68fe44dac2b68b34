"""URLs of the example shop."""

from django.urls import path

from shop import views

urlpatterns = [
    path("products/", views.products),
    path("cart/", views.cart),
    path("boom/", views.boom),
]
