"""Google Customer Match through the Data Manager API: connection, sender, errors."""
