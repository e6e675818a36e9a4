"""The search index on a Valkey server: the embedded server, the checked client, the index's fields as data, the
filters' query syntax, and the reads and writes of the photos' hashes."""
