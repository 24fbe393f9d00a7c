"""Response data: reading the CSV layouts (io), resolving a config to data (resolve), caching, splits, synthetic data, downloads and encoding a data folder's text."""
