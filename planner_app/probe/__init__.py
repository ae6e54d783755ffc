"""GPU probe reports: scoped probe tokens and measured server figures (calibrations)."""
