"""The real-time tier: post events (events.py) and the Server-Sent Events app (app.py)."""
