"""Destination clients: one small class per API over a ``worker.http.Destination``; typed methods
named after the API's operations. HTTP only: no job store, no Celery in here."""
