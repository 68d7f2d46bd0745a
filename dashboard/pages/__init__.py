"""The dashboard's pages, one module per page, named like its template in
``templates/dashboard/``; ``timeline.py`` is the part task and run pages share
(``_timeline.html``, ``_findings.html``). Each renders fully on the server: a permalink
reads with JavaScript off."""
