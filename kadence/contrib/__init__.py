"""Optional integrations of Kadence with other libraries (each imports its library lazily)."""
