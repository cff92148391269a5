"""Video rooms: the services that tell us who was in a session's room, and when."""
