"""The API routes, one module per resource; ``ROUTERS`` is what the app includes, in order."""

from medvlab.server.routes import adapters, analyze, chat, explain, feedback, kb, reports, segment, training
from medvlab.server.routes import pacs as pacs_routes

ROUTERS = [
    chat.router,
    analyze.router,
    explain.router,
    reports.router,
    segment.router,
    kb.router,
    feedback.router,
    adapters.router,
    pacs_routes.router,
    training.router,
]
