"""Site-editable mapping files: loaded and validated at start-up, applied by the adapters."""
