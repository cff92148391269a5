"""The outbox dispatcher and the periodic jobs."""
