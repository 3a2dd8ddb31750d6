"""Lambda glue shared by the handlers: Powertools objects, cached settings and clients, the token from
Secrets Manager. The product logic lives in ``omborigrid_export``; this package only wires it to Lambda."""
