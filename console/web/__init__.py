"""The console's server-rendered pages (Jinja2, autoescaped; a little CSS and JS)."""
