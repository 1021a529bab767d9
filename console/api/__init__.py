"""The console's HTTP API (FastAPI); the app factory is console.api.app.create_app."""
