"""Use cases. Each runs inside the one transaction its caller opened; none commits."""
