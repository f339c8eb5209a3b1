"""Meta (Facebook and Instagram) Custom Audiences: identifiers as Meta wants them."""
