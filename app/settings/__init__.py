"""The Settings pages: the full page and the htmx partials it is made of."""

from flask import Flask


def init_app(app: Flask) -> None:
    """Register the settings blueprint."""
    from app.settings import notifications, offsite, routes, schedule  # noqa: F401 - each registers its routes on bp
    from app.settings.pages import bp

    app.register_blueprint(bp)
    app.context_processor(
        lambda: {"notifications_block": notifications.notifications_block, "offsite_block": offsite.offsite_block}
    )
