"""Adapters to the outside world; the services see them only through ``services.ports``."""
