"""The console's HTTP API (FastAPI); the app factory is console.app.create_app."""
