"""What every domain shares: authentication, error bodies, request limits, parsing, pagination, validation."""
