"""The sync report as web pages for the Airflow UI plugin (plugins/audience_sync_ui.py).

``render`` turns report dicts into HTML (pure functions); ``reports`` reads run folders and the
rejects files, never handing an email address to a page.
"""
