"""Outgoing mail: SMTP and a folder of .eml files; the messages and their templates."""
