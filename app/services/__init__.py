"""The work of the app, free of Flask request objects."""
