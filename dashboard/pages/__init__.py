"""The dashboard's pages, one module per page, named like its template in
``templates/dashboard/``. Each renders fully on the server: a permalink reads with
JavaScript off."""
