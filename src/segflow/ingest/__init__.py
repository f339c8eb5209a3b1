"""The CSV import stage: reading, checking and storing one file into a dataset."""
