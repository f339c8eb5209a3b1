"""The web app: JSON API, Server-Sent Events, pages. Thin over the library."""
