"""The panels of the web UI, one module each: ``build(...)`` creates the components (in the layout context
:mod:`medvlab.ui.app` opens) and returns them as a small dataclass; ``wire(...)`` connects their events to
the module's handlers, which take the lab as their first argument."""
