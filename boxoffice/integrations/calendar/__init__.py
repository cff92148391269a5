"""Calendars: .ics documents and CalDAV."""
